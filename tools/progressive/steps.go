package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// A step of a canary run, as the tool's controller performs it.
type step struct {
	// Label is what the plan said: "10", "promote", "rollback".
	Label string `json:"label"`
	// CanaryWeight is the weight the tool gives the canary at this step. Promotion and
	// rollback both end with 0: after a promotion the stable side runs the new version.
	CanaryWeight int `json:"canary_weight"`
	// File is the step's objects, relative to the output directory.
	File string `json:"file"`
}

func parseSteps(plan string) ([]step, error) {
	var steps []step
	for _, part := range strings.Split(plan, ",") {
		part = strings.TrimSpace(part)
		switch part {
		case "promote", "rollback":
			steps = append(steps, step{Label: part, CanaryWeight: 0})
		default:
			w, err := strconv.Atoi(part)
			if err != nil || w < 0 || w > 100 {
				return nil, fmt.Errorf("--steps: %q is neither a weight 0-100 nor promote/rollback", part)
			}
			steps = append(steps, step{Label: part, CanaryWeight: w})
		}
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("--steps: empty plan")
	}
	return steps, nil
}

// A tool drives its own router through the plan and returns the objects it owns after each
// step (as YAML documents).
type tool interface {
	// apply performs one step and returns the objects to write.
	apply(s step) ([][]byte, error)
}

func runTool(args []string, open func(docs [][]byte) (tool, error)) error {
	fs := flag.NewFlagSet("progressive", flag.ContinueOnError)
	in := fs.String("in", "", "input YAML (the tool's resource; for argo also its VirtualService)")
	out := fs.String("out", "", "output directory")
	plan := fs.String("steps", "", "comma-separated: weights 0-100, promote, rollback")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" || *plan == "" {
		return fmt.Errorf("--in, --out and --steps are required")
	}
	steps, err := parseSteps(*plan)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	t, err := open(splitDocuments(raw))
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for i := range steps {
		objects, err := t.apply(steps[i])
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i, steps[i].Label, err)
		}
		steps[i].File = fmt.Sprintf("%02d-%s.yaml", i, steps[i].Label)
		body := []byte("# Written by tools/progressive: the objects the tool's own router owns after step " +
			steps[i].Label + ".\n")
		for j, o := range objects {
			if j > 0 {
				body = append(body, []byte("---\n")...)
			}
			body = append(body, o...)
		}
		if err := os.WriteFile(filepath.Join(*out, steps[i].File), body, 0o644); err != nil {
			return err
		}
	}
	index, err := json.MarshalIndent(steps, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, "steps.json"), append(index, '\n'), 0o644)
}

// splitDocuments splits a multi-document YAML on lines that are exactly "---".
func splitDocuments(raw []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.TrimSpace(strings.Join(cur, "\n"))
		if doc != "" && !onlyComments(doc) {
			docs = append(docs, []byte(doc+"\n"))
		}
		cur = nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// kindOf reads a document's kind.
func kindOf(doc []byte) (string, error) {
	var meta struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return "", err
	}
	return meta.Kind, nil
}

// toYAML writes an object with its apiVersion and kind.
func toYAML(apiVersion, kind string, obj any) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, err
	}
	m["apiVersion"] = apiVersion
	m["kind"] = kind
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
		delete(meta, "resourceVersion")
		if len(meta) == 0 {
			delete(m, "metadata")
		}
	}
	delete(m, "status")
	return yaml.Marshal(m)
}
