package oracle

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"

	"istio.io/istio/istioctl/pkg/util/formatting"
	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/resource"
)

// istioctlFileExtensions are the files `istioctl analyze` reads from a directory.
var istioctlFileExtensions = map[string]bool{".json": true, ".yaml": true, ".yml": true}

// AnalyzeResult is what `istioctl analyze --use-kube=false` would print.
type AnalyzeResult struct {
	Messages diag.Messages
	// Lines are the messages as istioctl's log format prints them, one per message.
	Lines []string
	// HasError is true when a message is Error level: istioctl's default --failure-threshold.
	HasError bool
}

// gatherAnalyzeFiles mirrors istioctl's gatherFiles: files as given, directories walked
// recursively for .json/.yaml/.yml. kustomization.yaml is skipped: kustomize's own input,
// which istioctl would report as a parse error rather than analyze.
func gatherAnalyzeFiles(args []string) ([]local.ReaderSource, error) {
	var readers []local.ReaderSource
	add := func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return inputErrorf("%s: %v", path, err)
		}
		readers = append(readers, local.ReaderSource{Name: path, Reader: bytes.NewReader(data)})
		return nil
	}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, inputErrorf("%v", err)
		}
		if !st.IsDir() {
			if err := add(a); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !istioctlFileExtensions[filepath.Ext(path)] || !isYAMLOrJSONObjectFile(path) {
				return nil
			}
			return add(path)
		})
		if err != nil {
			return nil, err
		}
	}
	return readers, nil
}

func isYAMLOrJSONObjectFile(path string) bool {
	base := filepath.Base(path)
	return base != "kustomization.yaml" && base != "kustomization.yml"
}

// Analyze runs the analysis `istioctl analyze --use-kube=false FILES...` runs: all
// analyzers, Istio's default resources (default mesh config, ...), files as the source.
// namespace means what istioctl's --namespace means: objects without a namespace get it
// AND only messages about that namespace are kept. "" is istioctl's --all-namespaces:
// every message is kept (istioctl's own default, "default", would hide everything about
// our gateway and app namespaces).
func Analyze(args []string, namespace string) (*AnalyzeResult, error) {
	readers, err := gatherAnalyzeFiles(args)
	if err != nil {
		return nil, err
	}
	sa := local.NewIstiodAnalyzer(analyzers.AllCombined(),
		resource.Namespace(namespace), resource.Namespace("istio-system"), nil)
	if err := sa.AddDefaultResources(); err != nil {
		return nil, err
	}
	if len(readers) > 0 {
		if err := sa.AddReaderKubeSource(readers); err != nil {
			return nil, inputErrorf("error(s) adding files: %v", err)
		}
	}
	cancel := make(chan struct{})
	result, err := sa.Analyze(cancel)
	if err != nil {
		return nil, err
	}
	msgs := result.Messages.SetDocRef("istioctl-analyze")
	res := &AnalyzeResult{Messages: *msgs}
	for _, m := range *msgs {
		line, err := formatting.Print(diag.Messages{m}, formatting.LogFormat, false)
		if err != nil {
			return nil, err
		}
		res.Lines = append(res.Lines, line)
		if m.Type.Level().IsWorseThanOrEqualTo(diag.Error) {
			res.HasError = true
		}
	}
	return res, nil
}
