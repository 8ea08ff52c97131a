package oracle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"istio.io/istio/pilot/test/xds"
)

// TranslateOptions are the `istio-xds translate` flags.
type TranslateOptions struct {
	// IstioVersion is the ISTIO_VERSION the proxy reports to istiod (X.Y.Z; required).
	IstioVersion string
	Inputs       []string
	OutDir       string
	Proxy        Proxy
	Listen       map[uint32]SocketAddr
	Endpoints    map[string][]SocketAddr
	Agent        AgentOptions
}

// Summary is OUT/summary.json.
type Summary struct {
	// IstioVersion is the ISTIO_VERSION the proxy reported to istiod.
	IstioVersion string `json:"istio_version"`
	// IstioModule is the istio.io/istio module this binary was built from (IstioModule()).
	IstioModule      string             `json:"istio_module"`
	ExtensionConfigs []ExtensionOutcome `json:"extension_configs"`
	Dropped          []string           `json:"dropped"`
	Warnings         []string           `json:"warnings"`
	Listeners        []string           `json:"listeners"`
	Clusters         []string           `json:"clusters"`
	Routes           []string           `json:"routes"`
	// RouteFiles maps each route configuration name to its file, relative to OUT.
	RouteFiles map[string]string `json:"route_files"`
	// IgnoredObjects are input documents of kinds neither Istio nor Kubernetes knows.
	IgnoredObjects []string `json:"ignored_objects"`
}

// LoadEndpoints reads the --endpoints JSON: {"cluster name": ["ip:port", ...]}.
func LoadEndpoints(path string) (map[string][]SocketAddr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, inputErrorf("--endpoints: %v", err)
	}
	var raw map[string][]string
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, inputErrorf("--endpoints %s: %v", path, err)
	}
	out := map[string][]SocketAddr{}
	for name, addrs := range raw {
		for _, a := range addrs {
			sa, err := ParseSocketAddr(a)
			if err != nil {
				return nil, inputErrorf("--endpoints %s: cluster %s: %v", path, name, err)
			}
			out[name] = append(out[name], sa)
		}
	}
	return out, nil
}

// istioModulePath is the module whose version IstioModule reports.
const istioModulePath = "istio.io/istio"

// IstioModule is the istio.io/istio module this binary was built from, as `go version -m`
// shows it: "istio.io/istio v0.0.0-20260827124520-eed52ebb66ad" (with " => REPLACEMENT" when
// the go.mod in use replaces it, which neither of ours does).
//
// It comes from the binary's module build information. A test binary has none for its
// dependencies (`go version -m` lists only the main module), so there it comes from the
// source path the compiler recorded for an Istio function: GOMODCACHE/istio.io/istio@VERSION/...
// (istio.io/istio@VERSION/... under -trimpath), the same VERSION. Either way it names the
// Istio in the go.mod or -modfile the binary was built with.
func IstioModule() (string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", fmt.Errorf("this binary has no module build information (debug.ReadBuildInfo), so it cannot tell which %s it holds", istioModulePath)
	}
	for _, d := range bi.Deps {
		if d.Path != istioModulePath {
			continue
		}
		s := d.Path + " " + d.Version
		if r := d.Replace; r != nil {
			s += " => " + r.Path
			if r.Version != "" {
				s += " " + r.Version
			}
		}
		return s, nil
	}
	// No dependency list (a test binary): read the version off the compiled Istio code.
	pc := reflect.ValueOf(xds.NewFakeDiscoveryServer).Pointer()
	fn := runtime.FuncForPC(pc)
	if fn == nil {
		return "", fmt.Errorf("%s is not among the modules of this binary's build information (main module %s), and the binary has no function table to read it from", istioModulePath, bi.Main.Path)
	}
	file, _ := fn.FileLine(pc)
	v, err := moduleVersionFromSourcePath(file, istioModulePath)
	if err != nil {
		return "", fmt.Errorf("%s is not among the modules of this binary's build information (main module %s): %v", istioModulePath, bi.Main.Path, err)
	}
	return istioModulePath + " " + v, nil
}

// moduleVersionFromSourcePath reads VERSION off a source path the Go toolchain recorded for a
// file of module MODULE: .../MODULE@VERSION/dir/file.go (module cache) or
// MODULE@VERSION/dir/file.go (-trimpath). A replaced or vendored module has no @VERSION there.
func moduleVersionFromSourcePath(file, module string) (string, error) {
	i := strings.LastIndex(file, module+"@")
	if i < 0 || (i > 0 && file[i-1] != '/') {
		return "", fmt.Errorf("source path %q is not inside a %s@VERSION module directory (replaced or vendored?)", file, module)
	}
	v, _, ok := strings.Cut(file[i+len(module)+1:], "/")
	if !ok || !strings.HasPrefix(v, "v") {
		return "", fmt.Errorf("source path %q has no %s@VERSION/ directory", file, module)
	}
	return v, nil
}

// Translate runs istiod and istio-agent on the inputs and writes the files for a
// standalone Envoy into opts.OutDir (see README.md for the layout).
func Translate(opts TranslateOptions) (*Summary, error) {
	out, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, err
	}
	if err := CheckIstioVersion(opts.IstioVersion); err != nil {
		return nil, err
	}
	module, err := IstioModule()
	if err != nil {
		return nil, err
	}
	in, err := LoadInputs(opts.Inputs)
	if err != nil {
		return nil, err
	}
	x, err := GenerateXDS(in, opts.Proxy, opts.IstioVersion)
	if err != nil {
		return nil, err
	}

	if opts.Agent.CacheDir == "" {
		opts.Agent.CacheDir = filepath.Join(out, "wasm-cache")
	}
	if err := os.MkdirAll(opts.Agent.CacheDir, 0o755); err != nil {
		return nil, err
	}
	outcomes, err := ConvertExtensionConfigs(x.ExtensionConfigs, opts.Agent)
	if err != nil {
		return nil, err
	}

	rw := &Rewriter{OutDir: out, Listen: opts.Listen, Endpoints: opts.Endpoints}
	listeners, err := rw.RewriteListeners(x.Listeners)
	if err != nil {
		return nil, err
	}
	clusters, err := rw.RewriteClusters(x.Clusters)
	if err != nil {
		return nil, err
	}
	// Only the routes the kept listeners use: the others would be files nothing reads.
	keptRoutes, _, err := listenerReferences(listeners)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, n := range keptRoutes {
		used[n] = true
	}
	var routes []*route.RouteConfiguration
	for _, rc := range x.Routes {
		if !used[rc.Name] {
			rw.Dropped = append(rw.Dropped, fmt.Sprintf("route %s: used only by dropped listeners", rc.Name))
			continue
		}
		routes = append(routes, rc)
	}
	rw.RewriteRoutes(routes)
	for _, n := range x.MissingExtensionConfigs {
		rw.Warnings = append(rw.Warnings, fmt.Sprintf("istiod sent no extension config %s that a filter's config_discovery names", n))
	}

	sum := &Summary{
		IstioVersion:     opts.IstioVersion,
		IstioModule:      module,
		ExtensionConfigs: outcomes,
		RouteFiles:       map[string]string{},
		IgnoredObjects:   nonNil(in.Ignored),
	}

	// Write what listeners reference before the listeners, so an Envoy watching the
	// directory never loads a listener whose route or filter file is not there yet.
	ecdsKeep := map[string]bool{}
	for i, r := range x.ExtensionConfigs {
		ec := &core.TypedExtensionConfig{}
		if err := r.UnmarshalTo(ec); err != nil {
			return nil, err
		}
		path := rw.ECDSPath(ec.Name)
		data, err := discoveryFile([]proto.Message{ec})
		if err != nil {
			return nil, fmt.Errorf("extension config %s: %v", ec.Name, err)
		}
		if err := writeAtomic(path, data); err != nil {
			return nil, err
		}
		ecdsKeep[filepath.Base(path)] = true
		sum.ExtensionConfigs[i].File = rel(out, path)
	}
	rdsKeep := map[string]bool{}
	for _, rc := range routes {
		path := rw.RoutePath(rc.Name)
		data, err := discoveryFile([]proto.Message{rc})
		if err != nil {
			return nil, fmt.Errorf("route %s: %v", rc.Name, err)
		}
		if err := writeAtomic(path, data); err != nil {
			return nil, err
		}
		rdsKeep[filepath.Base(path)] = true
		sum.Routes = append(sum.Routes, rc.Name)
		sum.RouteFiles[rc.Name] = rel(out, path)
	}
	var cmsgs []proto.Message
	for _, c := range clusters {
		cmsgs = append(cmsgs, c)
		sum.Clusters = append(sum.Clusters, c.Name)
	}
	data, err := discoveryFile(cmsgs)
	if err != nil {
		return nil, fmt.Errorf("clusters: %v", err)
	}
	if err := writeAtomic(filepath.Join(out, "cds.json"), data); err != nil {
		return nil, err
	}
	var lmsgs []proto.Message
	for _, l := range listeners {
		lmsgs = append(lmsgs, l)
		sum.Listeners = append(sum.Listeners, l.Name)
	}
	data, err = discoveryFile(lmsgs)
	if err != nil {
		return nil, fmt.Errorf("listeners: %v", err)
	}
	if err := writeAtomic(filepath.Join(out, "lds.json"), data); err != nil {
		return nil, err
	}
	if err := removeStale(filepath.Join(out, "ecds"), ecdsKeep); err != nil {
		return nil, err
	}
	if err := removeStale(filepath.Join(out, "rds"), rdsKeep); err != nil {
		return nil, err
	}

	sum.Dropped = nonNil(rw.Dropped)
	sum.Warnings = nonNil(rw.Warnings)
	sum.Listeners = nonNil(sum.Listeners)
	sum.Clusters = nonNil(sum.Clusters)
	sum.Routes = nonNil(sum.Routes)
	if err := writeJSON(filepath.Join(out, "summary.json"), sum); err != nil {
		return nil, err
	}
	return sum, nil
}

func rel(base, path string) string {
	if r, err := filepath.Rel(base, path); err == nil {
		return r
	}
	return path
}

// nonNil keeps JSON arrays as [] rather than null for the Rust side.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
