package oracle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	kubelib "istio.io/istio/pkg/kube"
)

// InputError is bad user input (unreadable file, unparsable or invalid object).
// The CLI maps it to exit code 2, everything else that fails to exit code 1.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// Inputs is what the YAML files hold, split the way the fake discovery server takes them.
type Inputs struct {
	// Configs are Istio config kinds (Gateway, VirtualService, EnvoyFilter, WasmPlugin, ...),
	// already validated the way istiod's admission webhook validates them.
	Configs []config.Config
	// KubeObjects are Kubernetes objects (Service, Namespace, Deployment, ...): Services are
	// what make outbound clusters exist. Gateway API objects (Gateway, HTTPRoute, GatewayClass,
	// ...) are here too: istiod's Gateway API controller reads them from the Kubernetes API.
	KubeObjects []runtime.Object
	// Ignored names documents of kinds neither Istio nor the Kubernetes scheme knows.
	Ignored []string
}

// isYAMLFile selects the files a directory contributes. kustomization.yaml is kustomize's
// own input, not an object for the cluster.
func isYAMLFile(path string) bool {
	base := filepath.Base(path)
	if base == "kustomization.yaml" || base == "kustomization.yml" {
		return false
	}
	ext := filepath.Ext(base)
	return ext == ".yaml" || ext == ".yml"
}

// expandPaths turns each argument into a sorted list of files (dirs recursively); flag
// ("--in " for translate) prefixes the path in errors.
func expandPaths(paths []string, flag string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, inputErrorf("%s%s: %v", flag, p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && isYAMLFile(path) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, inputErrorf("%s%s: %v", flag, p, err)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// LoadInputs reads every document of every file. Each document is parsed on its own so an
// error names the file, the document index and, when known, the object.
func LoadInputs(paths []string) (*Inputs, error) {
	files, err := expandPaths(paths, "--in ")
	if err != nil {
		return nil, err
	}
	// One creation time for all configs, as Istio's own test harness does: Istio orders
	// conflicting configs by creation time, then by name, so ties fall back to names.
	created := time.Now()
	in := &Inputs{}
	// Duplicates are an input error (kustomize refuses them too); istiod's fake
	// Kubernetes API would otherwise panic on the second create.
	seen := map[string]string{}
	for _, file := range files {
		docs, err := readYAMLFile(file)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			doc, raw := d.number, d.raw
			if err := in.addDocument(raw, created); err != nil {
				return nil, inputErrorf("%s: document %d: %v", file, doc, err)
			}
			id := objectID(raw)
			if prev, dup := seen[id]; dup && id != "" {
				return nil, inputErrorf("%s: document %d: %s is also defined in %s", file, doc, describe(raw), prev)
			}
			seen[id] = fmt.Sprintf("%s (document %d)", file, doc)
		}
	}
	return in, nil
}

// gatewayAPIGroups are the API groups of the Kubernetes Gateway API. istiod's Gateway API
// controller watches them through its Kubernetes client (pilot/test/xds creates their CRDs in
// its fake API server), not through the Istio config store that crd.ParseInputs feeds, so
// these objects go in as Kubernetes objects, as pilot's own tests give them
// (KubernetesObjectString).
var gatewayAPIGroups = map[string]bool{
	"gateway.networking.k8s.io":   true,
	"gateway.networking.x-k8s.io": true,
}

// isGatewayAPI says whether a document is a Gateway API object.
func isGatewayAPI(raw []byte) bool {
	meta, ok := parseMeta(raw)
	if !ok {
		return false
	}
	group, _, found := strings.Cut(meta.APIVersion, "/")
	return found && gatewayAPIGroups[group]
}

func (in *Inputs) addDocument(raw []byte, created time.Time) error {
	if isGatewayAPI(raw) {
		return in.addKubeObject(raw)
	}
	// crd.ParseInputs is what istiod's own tests use: it converts Istio kinds and
	// validates them with the same schema validation the admission webhook runs.
	configs, others, err := crd.ParseInputs(string(raw))
	if err != nil {
		return fmt.Errorf("%s: %v", describe(raw), err)
	}
	for _, c := range configs {
		if c.Namespace == "" {
			c.Namespace = "default"
		}
		c.CreationTimestamp = created
		// istiod's CRD client stamps every config with the cluster's domain suffix
		// (crdclient: cfg.Domain = domainSuffix); VirtualService short names such as
		// `host: my-app-stable` resolve against it (ResolveShortnameToFQDN), to
		// my-app-stable.NS.svc.cluster.local. Without it they would name no cluster.
		c.Domain = "cluster.local"
		in.Configs = append(in.Configs, c)
	}
	if len(others) == 0 {
		return nil
	}
	return in.addKubeObject(raw)
}

// addKubeObject decodes a Kubernetes object with Istio's scheme (core kinds, Gateway API);
// a kind the scheme does not know is listed in Ignored.
func (in *Inputs) addKubeObject(raw []byte) error {
	obj, _, err := kubelib.IstioCodec.UniversalDeserializer().Decode(raw, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) || runtime.IsMissingKind(err) {
			in.Ignored = append(in.Ignored, describe(raw))
			return nil
		}
		return fmt.Errorf("%s: %v", describe(raw), err)
	}
	in.KubeObjects = append(in.KubeObjects, obj)
	return nil
}

// objectMeta is what objectID and describe read of a document.
type objectMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// parseMeta reads a document's apiVersion, kind, namespace and name; false without a kind.
func parseMeta(raw []byte) (objectMeta, bool) {
	var meta objectMeta
	if err := utilyaml.Unmarshal(raw, &meta); err != nil || meta.Kind == "" {
		return meta, false
	}
	return meta, true
}

// objectID identifies an object the way the API server does: group, kind, namespace, name.
func objectID(raw []byte) string {
	meta, ok := parseMeta(raw)
	if !ok {
		return ""
	}
	group, _, _ := strings.Cut(meta.APIVersion, "/")
	if !strings.Contains(meta.APIVersion, "/") {
		group = "" // core/v1
	}
	return group + "|" + meta.Kind + "|" + meta.Metadata.Namespace + "|" + meta.Metadata.Name
}

// describe names a document as kind/namespace/name for error messages, best effort.
func describe(raw []byte) string {
	meta, ok := parseMeta(raw)
	if !ok {
		return "object"
	}
	if meta.Metadata.Namespace == "" {
		return meta.Kind + "/" + meta.Metadata.Name
	}
	return meta.Kind + "/" + meta.Metadata.Namespace + "/" + meta.Metadata.Name
}

// stripComments drops comment-only lines so a document of just comments counts as empty.
func stripComments(raw []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// yamlDocument is one document of a multi-document YAML stream and its 1-based number.
type yamlDocument struct {
	number int
	raw    []byte
}

// readYAMLFile reads an input file's documents; an unreadable file or stream is an input
// error naming the file.
func readYAMLFile(file string) ([]yamlDocument, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, inputErrorf("%s: %v", file, err)
	}
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, inputErrorf("%s: %v", file, err)
	}
	return docs, nil
}

// yamlDocuments splits a multi-document YAML stream as kubectl reads it, dropping empty and
// comment-only documents (they keep their numbers in the count). A read error names the
// document it happened in.
func yamlDocuments(data []byte) ([]yamlDocument, error) {
	var docs []yamlDocument
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", doc, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		docs = append(docs, yamlDocument{number: doc, raw: raw})
	}
}
