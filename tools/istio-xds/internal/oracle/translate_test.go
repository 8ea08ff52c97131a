package oracle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// minimalWasm is the smallest valid module: the agent checks the magic and version.
var minimalWasm = []byte("\x00asm\x01\x00\x00\x00")

// testManifests is what sticky-canary renders for a plain-HTTP gateway, reduced: Gateway on
// 80, a header-match canary route that removes the token, subsets, the Service, and the
// EnvoyFilter pair (EXTENSION_CONFIG + HTTP_FILTER over ECDS) as in manifests/plugin.yaml.
const testManifests = `
apiVersion: v1
kind: Namespace
metadata:
  name: ns-canary-istio
---
apiVersion: v1
kind: Service
metadata:
  name: svc-my-app
  namespace: ns-canary-istio
spec:
  selector:
    app: my-app
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gateway-my-app
  namespace: ns-canary-istio
spec:
  selector:
    istio: aks-istio-ingressgateway-external
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [my-app.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-my-app
  namespace: ns-canary-istio
spec:
  hosts: [my-app.example.com]
  gateways: [gateway-my-app]
  http:
  - name: v2
    match:
    - headers:
        x-canary-version: {exact: v2}
        x-canary-token: {exact: secret-token}
    route:
    - destination: {host: svc-my-app.ns-canary-istio.svc.cluster.local, subset: v2, port: {number: 80}}
    headers:
      request:
        remove: [x-canary-token]
  - name: v1-default
    route:
    - destination: {host: svc-my-app.ns-canary-istio.svc.cluster.local, subset: v1, port: {number: 80}}
    headers:
      request:
        remove: [x-canary-token]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dr-my-app
  namespace: ns-canary-istio
spec:
  host: svc-my-app.ns-canary-istio.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: sticky-canary-my-app
  namespace: aks-istio-ingress
spec:
  workloadSelector:
    labels:
      istio: aks-istio-ingressgateway-external
  configPatches:
  - applyTo: EXTENSION_CONFIG
    patch:
      operation: ADD
      value:
        name: sticky-canary-my-app
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            name: sticky-canary-my-app
            vm_config:
              vm_id: sticky-canary-my-app
              runtime: envoy.wasm.runtime.v8
              code:
                remote:
                  http_uri:
                    uri: %s
                    timeout: 30s
                    cluster: _
                  sha256: '%s'
            configuration:
              '@type': type.googleapis.com/google.protobuf.StringValue
              value: '{}'
%s
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: sticky-canary-my-app
        config_discovery:
          config_source:
            ads: {}
            initial_fetch_timeout: 0s
          type_urls:
          - type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          - type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
`

const (
	v1Cluster = "outbound|80|v1|svc-my-app.ns-canary-istio.svc.cluster.local"
	v2Cluster = "outbound|80|v2|svc-my-app.ns-canary-istio.svc.cluster.local"
)

// writeManifests writes testManifests with the module url, its sha256 and the failure
// settings lines (indented under config:).
func writeManifests(t *testing.T, moduleURL, sha, failure string) string {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(testManifests, moduleURL, sha, failure)
	if err := os.WriteFile(filepath.Join(dir, "manifests.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ignored like a kustomize input should be.
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [manifests.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testGateway() Proxy {
	p, err := ParseProxy("", "", nil, "")
	if err != nil {
		panic(err)
	}
	return p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// closedPortURL is an http url nothing listens on (connection refused at once).
func closedPortURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/plugin.wasm"
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func TestTranslateWasmOutcomes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(minimalWasm) }))
	defer srv.Close()
	tlsURL, stopTLS, err := ServeFile(writeFile(t, "plugin.wasm", minimalWasm), true)
	if err != nil {
		t.Fatal(err)
	}
	defer stopTLS()
	tlsHost := mustHost(t, tlsURL)
	good := sha256Hex(minimalWasm)
	wrong := strings.Repeat("0", 64)

	cases := []struct {
		name        string
		url         string
		sha         string
		failure     string
		insecure    []string
		wantOutcome string
		wantErr     string
	}{
		{"http module with right sha256", srv.URL + "/plugin.wasm", good, "            fail_open: true", nil, OutcomeWasm, ""},
		{"wrong sha256, fail_open", srv.URL + "/plugin.wasm", wrong, "            fail_open: true", nil, OutcomeRBACAllow, "checksum"},
		{"wrong sha256, failure_policy FAIL_OPEN", srv.URL + "/plugin.wasm", wrong, "            failure_policy: FAIL_OPEN", nil, OutcomeRBACAllow, "checksum"},
		{"wrong sha256, failure_policy FAIL_CLOSED", srv.URL + "/plugin.wasm", wrong, "            failure_policy: FAIL_CLOSED", nil, OutcomeRBACDeny, "checksum"},
		{"wrong sha256, default is fail closed", srv.URL + "/plugin.wasm", wrong, "", nil, OutcomeRBACDeny, "checksum"},
		{"nothing listening, fail_open", closedPortURL(t), good, "            fail_open: true", nil, OutcomeRBACAllow, "download failed"},
		{"https self-signed, host allowed insecure", tlsURL, good, "", []string{tlsHost}, OutcomeWasm, ""},
		{"https self-signed, * allowed insecure", tlsURL, good, "", []string{"*"}, OutcomeWasm, ""},
		{"https self-signed, not allowed", tlsURL, good, "", nil, OutcomeRBACDeny, "certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, sum := translateFetching(t, writeManifests(t, c.url, c.sha, c.failure), 2, c.insecure)
			if len(sum.ExtensionConfigs) != 1 {
				t.Fatalf("extension configs %+v", sum.ExtensionConfigs)
			}
			ec := sum.ExtensionConfigs[0]
			if ec.Name != "sticky-canary-my-app" || ec.Outcome != c.wantOutcome || ec.File != "ecds/sticky-canary-my-app.json" {
				t.Fatalf("extension config %+v, want outcome %s", ec, c.wantOutcome)
			}
			if !strings.Contains(ec.Error, c.wantErr) || (c.wantErr == "") != (ec.Error == "") {
				t.Errorf("error %q, want it to mention %q", ec.Error, c.wantErr)
			}
			ecds, err := os.ReadFile(filepath.Join(out, ec.File))
			if err != nil {
				t.Fatal(err)
			}
			switch c.wantOutcome {
			case OutcomeWasm:
				got, err := os.ReadFile(ec.LocalFile)
				if err != nil || string(got) != string(minimalWasm) {
					t.Errorf("local module %s: %v", ec.LocalFile, err)
				}
				if !strings.Contains(string(ecds), ec.LocalFile) || strings.Contains(string(ecds), "http_uri") {
					t.Errorf("ECDS file does not load the local module:\n%s", ecds)
				}
			case OutcomeRBACAllow, OutcomeRBACDeny:
				if !strings.Contains(string(ecds), "envoy.extensions.filters.http.rbac.v3.RBAC") {
					t.Errorf("ECDS file is not the RBAC fallback:\n%s", ecds)
				}
			}
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestTranslateOutput checks the files a standalone Envoy reads, and what istiod made of
// the manifests (this is the oracle: when these expectations break, Istio changed).
func TestTranslateOutput(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(minimalWasm) }))
	defer srv.Close()
	in := writeManifests(t, srv.URL+"/plugin.wasm", sha256Hex(minimalWasm), "            fail_open: true")
	out := t.TempDir()
	opts := TranslateOptions{
		IstioVersion: testIstioVersion(t),
		Inputs:       []string{in},
		OutDir:       out,
		Proxy:        testGateway(),
		Listen:       map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
		Endpoints:    map[string][]SocketAddr{v1Cluster: {{"127.0.0.1", 34001}}, v2Cluster: {{"127.0.0.1", 34002}}},
	}
	sum, err := Translate(opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sum.Listeners, ",") != "0.0.0.0_80" || strings.Join(sum.Routes, ",") != "http.80" {
		t.Errorf("listeners %v routes %v", sum.Listeners, sum.Routes)
	}
	for _, f := range []string{"lds.json", "cds.json", "rds/http.80.json", "ecds/sticky-canary-my-app.json", "summary.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	lds, _ := os.ReadFile(filepath.Join(out, "lds.json"))
	for _, want := range []string{
		`"address": "127.0.0.1"`, `"port_value": 18080`,
		`"path": "` + filepath.Join(out, "rds/http.80.json") + `"`,
		`"path": "` + filepath.Join(out, "ecds/sticky-canary-my-app.json") + `"`,
	} {
		if !strings.Contains(string(lds), want) {
			t.Errorf("lds.json lacks %s", want)
		}
	}
	if strings.Contains(string(lds), `"ads"`) {
		t.Errorf("lds.json still has an ADS config source")
	}
	// Our filter sits right before the router, as INSERT_BEFORE router asks.
	hf := httpFilterNames(t, lds)
	if len(hf) < 2 || hf[len(hf)-2] != "sticky-canary-my-app" || hf[len(hf)-1] != "envoy.filters.http.router" {
		t.Errorf("http filters %v", hf)
	}

	rds, _ := os.ReadFile(filepath.Join(out, "rds/http.80.json"))
	for _, want := range []string{
		`"name": "my-app.example.com:80"`, `"name": "x-canary-version"`, `"exact": "v2"`,
		`"name": "x-canary-token"`, `"request_headers_to_remove": [`,
		`"cluster": "` + v2Cluster + `"`, `"cluster": "` + v1Cluster + `"`,
	} {
		if !strings.Contains(string(rds), want) {
			t.Errorf("rds/http.80.json lacks %s", want)
		}
	}
	cds, _ := os.ReadFile(filepath.Join(out, "cds.json"))
	if strings.Contains(string(cds), `"EDS"`) || strings.Contains(string(cds), "eds_cluster_config") || !strings.Contains(string(cds), `"port_value": 34002`) {
		t.Errorf("cds.json not rewritten to STATIC with endpoints:\n%s", cds)
	}

	// Re-running into the same directory keeps unchanged files byte-identical.
	before := map[string][]byte{}
	for _, f := range []string{"lds.json", "cds.json", "rds/http.80.json", "ecds/sticky-canary-my-app.json"} {
		before[f], _ = os.ReadFile(filepath.Join(out, f))
	}
	opts.Endpoints = map[string][]SocketAddr{v1Cluster: {{"127.0.0.1", 34003}}}
	if _, err := Translate(opts); err != nil {
		t.Fatal(err)
	}
	for f, b := range before {
		now, _ := os.ReadFile(filepath.Join(out, f))
		if changed := string(now) != string(b); changed != (f == "cds.json") {
			t.Errorf("%s changed=%v after an endpoints-only change", f, changed)
		}
	}
}

func httpFilterNames(t *testing.T, lds []byte) []string {
	var doc struct {
		Resources []struct {
			FilterChains []struct {
				Filters []struct {
					TypedConfig struct {
						HTTPFilters []struct {
							Name string `json:"name"`
						} `json:"http_filters"`
					} `json:"typed_config"`
				} `json:"filters"`
			} `json:"filter_chains"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(lds, &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range doc.Resources[0].FilterChains[0].Filters[0].TypedConfig.HTTPFilters {
		names = append(names, f.Name)
	}
	return names
}

func TestTranslateBadInput(t *testing.T) {
	cases := []struct {
		name, yaml, wantMsg string
	}{
		{"unparsable yaml", "kind: [unclosed\n", "document 1"},
		{"duplicate object", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", "also defined in"},
		{"invalid Istio config", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: ns}\nspec:\n  http: [{route: []}]\n", "VirtualService/ns/vs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := writeFile(t, "bad.yaml", []byte(c.yaml))
			_, err := Translate(TranslateOptions{IstioVersion: testIstioVersion(t), Inputs: []string{in}, OutDir: t.TempDir(), Proxy: testGateway()})
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("err = %v, want an InputError naming bad.yaml and %q", err, c.wantMsg)
			}
		})
	}
}

func TestLoadInputsIgnoresUnknownKinds(t *testing.T) {
	in := writeFile(t, "x.yaml", []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n# only a comment\n"))
	got, err := LoadInputs([]string{in})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Configs) != 0 || len(got.KubeObjects) != 0 || len(got.Ignored) != 1 {
		t.Errorf("got %+v", got)
	}
}

// A VirtualService destination given as a short name (Flagger and Argo Rollouts write
// `host: my-app-primary`) must resolve to the Service's cluster, as in istiod, whose CRD
// client stamps every config with the domain suffix.
func TestShortHostNamesResolveToTheServiceCluster(t *testing.T) {
	in := writeFile(t, "short.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: my-app-primary, namespace: ns}
spec:
  selector: {app: my-app-primary}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  selector: {istio: aks-istio-ingressgateway-external}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [my-app.example.com]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: my-app, namespace: ns}
spec:
  hosts: [my-app.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: my-app-primary}
`))
	out := t.TempDir()
	if _, err := Translate(TranslateOptions{
		IstioVersion: testIstioVersion(t),
		Inputs:       []string{in},
		OutDir:       out,
		Proxy:        testGateway(),
		Listen:       map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
	}); err != nil {
		t.Fatal(err)
	}
	rds, _ := os.ReadFile(filepath.Join(out, "rds/http.80.json"))
	if want := `"cluster": "outbound|80||my-app-primary.ns.svc.cluster.local"`; !strings.Contains(string(rds), want) {
		t.Errorf("rds/http.80.json lacks %s:\n%s", want, rds)
	}
}

func TestAnalyze(t *testing.T) {
	good := writeManifests(t, "oci://example.com/sticky-canary:0.1.0", strings.Repeat("0", 64), "            fail_open: true")
	bad := writeFile(t, "bad.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-bad, namespace: ns-canary-istio}
spec:
  hosts: [my-app.example.com]
  gateways: [no-such-gateway]
  http:
  - route:
    - destination: {host: svc-my-app.ns-canary-istio.svc.cluster.local}
`))
	cases := []struct {
		name      string
		args      []string
		namespace string
		wantError bool
		wantCodes []string
	}{
		{"rendered manifests: warnings only", []string{good}, "", false, []string{"IST0133", "IST0151"}},
		{"missing gateway is an error", []string{good, bad}, "", true, []string{"IST0101"}},
		{"namespace filter hides other namespaces", []string{good, bad}, "default", false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := Analyze(c.args, c.namespace)
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(res.Lines, "\n")
			if res.HasError != c.wantError {
				t.Errorf("HasError = %v, messages:\n%s", res.HasError, all)
			}
			for _, code := range c.wantCodes {
				if !strings.Contains(all, "["+code+"]") {
					t.Errorf("no %s in:\n%s", code, all)
				}
			}
			if c.wantCodes == nil && len(res.Lines) != 0 {
				t.Errorf("want no messages, got:\n%s", all)
			}
		})
	}
}

// translateFetching translates input for the AKS gateway, with the agent fetching modules
// (2 s timeout, `attempts` attempts per http(s) request), and checks that it took at most 10 s:
// a failing fetch must fail fast. It returns the output directory and the summary.
func translateFetching(t *testing.T, input string, attempts int, insecure []string) (string, *Summary) {
	t.Helper()
	out := t.TempDir()
	start := time.Now()
	sum, err := Translate(TranslateOptions{
		IstioVersion: testIstioVersion(t),
		Inputs:       []string{input},
		OutDir:       out,
		Proxy:        testGateway(),
		Listen:       map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
		Endpoints:    map[string][]SocketAddr{v1Cluster: {{"127.0.0.1", 34001}}},
		Agent:        AgentOptions{FetchTimeout: 2 * time.Second, FetchAttempts: attempts, InsecureRegistries: insecure},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("translate took %v; a failing fetch must fail fast", d)
	}
	return out, sum
}
