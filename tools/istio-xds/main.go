// Command istio-xds runs Istio's own code (istiod's translation, istio-agent's wasm
// conversion, istioctl analyze) as a test oracle for sticky-canary. See README.md.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sticky-canary/tools/istio-xds/internal/oracle"
)

// Exit codes.
const (
	exitOK           = 0
	exitFailure      = 1 // translation failed (or crd-check could not load the CRDs)
	exitBadInput     = 2 // unreadable/unparsable/invalid input or bad flags
	exitAnalyzeError = 3 // analyze found an Error-level message; crd-check found problems
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  istio-xds translate --istio-version X.Y.Z --in DIR_OR_FILE... --out DIR [--listen PORT=IP:PORT]... [--endpoints FILE]
                      [--proxy gateway|sidecar] [--proxy-namespace NS] [--proxy-label K=V]... [--proxy-ip IP]
                      [--wasm-cache DIR]
                      [--insecure-registry HOST[:PORT]|*]... [--fetch-timeout 5s] [--fetch-attempts 2]
  istio-xds analyze [--namespace NS] DIR_OR_FILE...   (default: all namespaces, like istioctl -A)
  istio-xds crd-check DIR_OR_FILE...                   (Istio kinds against this build's Istio CRDs, as the API server)
  istio-xds serve-file --file PATH [--tls]
  istio-xds version                                    ({"istio_module": "istio.io/istio v..."})
`)
}

func main() {
	oracle.QuietIstioLogs()
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitBadInput)
	}
	var code int
	switch os.Args[1] {
	case "translate":
		code = translate(os.Args[2:])
	case "analyze":
		code = analyze(os.Args[2:])
	case "crd-check":
		code = crdCheck(os.Args[2:])
	case "serve-file":
		code = serveFile(os.Args[2:])
	case "version", "--version":
		code = version(os.Args[2:])
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "istio-xds: unknown command %q\n", os.Args[1])
		usage()
		code = exitBadInput
	}
	os.Exit(code)
}

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "istio-xds: %v\n", err)
	return code
}

func errCode(err error) int {
	var ie *oracle.InputError
	if errors.As(err, &ie) {
		return exitBadInput
	}
	return exitFailure
}

func translate(args []string) int {
	fs := flag.NewFlagSet("translate", flag.ContinueOnError)
	var ins, listens, labels, insecure multiFlag
	fs.Var(&ins, "in", "YAML file or directory (repeatable)")
	out := fs.String("out", "", "output directory")
	istioVersion := fs.String("istio-version", "", "ISTIO_VERSION the proxy reports, X.Y.Z (required)")
	kind := fs.String("proxy", "gateway", "whose config istiod generates: gateway (the AKS ingress gateway) or sidecar")
	ns := fs.String("proxy-namespace", "", "namespace of the proxy's pod (gateway default aks-istio-ingress; required for a sidecar)")
	fs.Var(&labels, "proxy-label", "pod label k=v (repeatable; gateway default istio=aks-istio-ingressgateway-external)")
	ip := fs.String("proxy-ip", "", "pod IP the proxy reports (gateway default 127.0.0.1, sidecar 10.244.0.10)")
	fs.Var(&listens, "listen", "PORT=IP:PORT: bind the proxy's listener on PORT there (repeatable); others are dropped")
	endpoints := fs.String("endpoints", "", "JSON file {cluster: [\"ip:port\", ...]}")
	cache := fs.String("wasm-cache", "", "istio-agent wasm module cache directory (default OUT/wasm-cache)")
	fs.Var(&insecure, "insecure-registry", "HOST[:PORT] or * allowed over plain http / self-signed https (repeatable)")
	timeout := fs.Duration("fetch-timeout", 5*time.Second, "timeout of each module fetch request (WASM_HTTP_REQUEST_TIMEOUT)")
	attempts := fs.Int("fetch-attempts", 2, "http(s) fetch attempts (WASM_HTTP_REQUEST_MAX_RETRIES)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fail(exitBadInput, fmt.Errorf("translate: %v", err))
	}
	if len(ins) == 0 || *out == "" || fs.NArg() > 0 {
		return fail(exitBadInput, fmt.Errorf("translate: need --in and --out, and no positional arguments"))
	}
	if err := oracle.CheckIstioVersion(*istioVersion); err != nil {
		return fail(exitBadInput, fmt.Errorf("translate: %v", err))
	}
	proxy, err := oracle.ParseProxy(*kind, *ns, labels, *ip)
	if err != nil {
		return fail(errCode(err), err)
	}
	listen := map[uint32]oracle.SocketAddr{}
	for _, l := range listens {
		p, addr, ok := strings.Cut(l, "=")
		port, err := strconv.ParseUint(p, 10, 16)
		if !ok || err != nil {
			return fail(exitBadInput, fmt.Errorf("--listen %q: want PORT=IP:PORT", l))
		}
		sa, err := oracle.ParseSocketAddr(addr)
		if err != nil {
			return fail(exitBadInput, fmt.Errorf("--listen %v", err))
		}
		listen[uint32(port)] = sa
	}
	opts := oracle.TranslateOptions{
		IstioVersion: *istioVersion,
		Inputs:       ins,
		OutDir:       *out,
		Proxy:        proxy,
		Listen:       listen,
		Agent: oracle.AgentOptions{
			CacheDir:           *cache,
			InsecureRegistries: insecure,
			FetchTimeout:       *timeout,
			FetchAttempts:      *attempts,
		},
	}
	if *endpoints != "" {
		eps, err := oracle.LoadEndpoints(*endpoints)
		if err != nil {
			return fail(errCode(err), err)
		}
		opts.Endpoints = eps
	}
	sum, err := oracle.Translate(opts)
	if err != nil {
		return fail(errCode(err), err)
	}
	for _, e := range sum.ExtensionConfigs {
		if e.Error != "" {
			fmt.Fprintf(os.Stderr, "istio-xds: extension config %s: %s: %s\n", e.Name, e.Outcome, e.Error)
		}
	}
	return exitOK
}

func analyze(args []string) int {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	ns := fs.String("namespace", "", "like istioctl's --namespace: default namespace for objects AND only its messages; empty = all namespaces (istioctl -A)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fail(exitBadInput, fmt.Errorf("analyze: %v", err))
	}
	if fs.NArg() == 0 {
		return fail(exitBadInput, fmt.Errorf("analyze: need at least one file or directory"))
	}
	res, err := oracle.Analyze(fs.Args(), *ns)
	if err != nil {
		return fail(errCode(err), err)
	}
	for _, l := range res.Lines {
		fmt.Println(l)
	}
	if res.HasError {
		return exitAnalyzeError
	}
	return exitOK
}

// crdCheck prints, in input order, one line per problem (FILE: document N: KIND/NS/NAME:
// FIELD: message), one "ok: ..." line per Istio object without one, and one "skipped: ..."
// line per object of a non-Istio kind; counts go to stderr.
func crdCheck(args []string) int {
	fs := flag.NewFlagSet("crd-check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fail(exitBadInput, fmt.Errorf("crd-check: %v", err))
	}
	if fs.NArg() == 0 {
		return fail(exitBadInput, fmt.Errorf("crd-check: need at least one file or directory"))
	}
	res, err := oracle.CRDCheck(fs.Args())
	if err != nil {
		return fail(errCode(err), fmt.Errorf("crd-check: %v", err))
	}
	for _, l := range res.Lines {
		fmt.Println(l)
	}
	fmt.Fprintf(os.Stderr, "istio-xds crd-check: %d Istio object(s) checked, %d ok, %d problem(s), %d skipped\n", res.Checked, len(res.OK), len(res.Problems), len(res.Skipped))
	if len(res.Problems) > 0 {
		return exitAnalyzeError
	}
	return exitOK
}

// version prints which Istio the binary holds, so a caller can check a build without
// translating anything: {"istio_module": "istio.io/istio v0.0.0-..."}, the same string as
// summary.json's istio_module.
func version(args []string) int {
	if len(args) > 0 {
		return fail(exitBadInput, fmt.Errorf("version: takes no arguments, got %q", args))
	}
	module, err := oracle.IstioModule()
	if err != nil {
		return fail(exitFailure, fmt.Errorf("version: %v", err))
	}
	out, err := json.Marshal(struct {
		IstioModule string `json:"istio_module"`
	}{module})
	if err != nil {
		return fail(exitFailure, fmt.Errorf("version: %v", err))
	}
	fmt.Println(string(out))
	return exitOK
}

func serveFile(args []string) int {
	fs := flag.NewFlagSet("serve-file", flag.ContinueOnError)
	file := fs.String("file", "", "file to serve")
	tls := fs.Bool("tls", false, "https with a self-signed certificate")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil || *file == "" {
		return fail(exitBadInput, fmt.Errorf("serve-file: need --file PATH [--tls]"))
	}
	url, stop, err := oracle.ServeFile(*file, *tls)
	if err != nil {
		return fail(errCode(err), err)
	}
	defer stop()
	fmt.Println(url)
	// Serve until stdin closes, so the server dies with the test process that started it.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return exitOK
}
