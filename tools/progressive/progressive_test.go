package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestParseSteps(t *testing.T) {
	steps, err := parseSteps("0, 10,promote,rollback,100")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s=%d", s.Label, s.CanaryWeight))
	}
	if strings.Join(got, " ") != "0=0 10=10 promote=0 rollback=0 100=100" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"", "101", "-1", "ten", "10,,50"} {
		if _, err := parseSteps(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// weights reads the destinations (host and weight, in order) of every HTTP route of the
// VirtualService in a step file.
func weights(t *testing.T, file string) [][]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, doc := range splitDocuments(raw) {
		var vs struct {
			Kind string `json:"kind"`
			Spec struct {
				HTTP []struct {
					Route []struct {
						Destination struct {
							Host string `json:"host"`
						} `json:"destination"`
						Weight int `json:"weight"`
					} `json:"route"`
				} `json:"http"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &vs); err != nil {
			t.Fatal(err)
		}
		if vs.Kind != "VirtualService" {
			continue
		}
		for _, r := range vs.Spec.HTTP {
			var route []string
			for _, d := range r.Route {
				route = append(route, fmt.Sprintf("%s=%d", d.Destination.Host, d.Weight))
			}
			out = append(out, route)
		}
	}
	return out
}

// Both tools keep both destinations, stable first, at every step, 0 % and 100 % included:
// Istio then always emits weighted clusters, which the sticky-weights patch needs
// (a merge onto a single-cluster route would be rejected).
func TestToolsKeepBothDestinationsStableFirst(t *testing.T) {
	cases := []struct {
		tool, in       string
		open           func([][]byte) (tool, error)
		stable, canary string
	}{
		{"flagger", "../../examples/flagger/canary.yaml", newFlagger, "my-app-primary", "my-app-canary"},
		{"argo", "../../examples/argo-rollouts/rollout.yaml", newArgo, "my-app-stable", "my-app-canary"},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			out := t.TempDir()
			err := runTool([]string{"--in", c.in, "--out", out, "--steps", "0,10,100,rollback,promote"}, c.open)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"00-0.yaml":        c.stable + "=100 " + c.canary + "=0",
				"01-10.yaml":       c.stable + "=90 " + c.canary + "=10",
				"02-100.yaml":      c.stable + "=0 " + c.canary + "=100",
				"03-rollback.yaml": c.stable + "=100 " + c.canary + "=0",
				"04-promote.yaml":  c.stable + "=100 " + c.canary + "=0",
			}
			for file, w := range want {
				got := weights(t, filepath.Join(out, file))
				if len(got) != 1 || strings.Join(got[0], " ") != w {
					t.Errorf("%s: routes %v, want [%s]", file, got, w)
				}
			}
		})
	}
}

func TestBadInputIsNamed(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := runTool([]string{"--in", file, "--out", dir, "--steps", "10"}, newFlagger)
	if err == nil || !strings.Contains(err.Error(), "no Canary") {
		t.Errorf("flagger: %v", err)
	}
	err = runTool([]string{"--in", file, "--out", dir, "--steps", "10"}, newArgo)
	if err == nil || !strings.Contains(err.Error(), "no Rollout") {
		t.Errorf("argo: %v", err)
	}
}
