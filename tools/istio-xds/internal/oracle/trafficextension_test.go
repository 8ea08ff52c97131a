package oracle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmextensions "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	extensions "istio.io/api/extensions/v1alpha1"
)

// testTrafficExtension is a native TrafficExtension (extensions.istio.io/v1alpha1, the
// successor of WasmPlugin) carrying our module: namespace, the attachment lines (selector or
// targetRefs, indented under spec), url, sha256, and the failStrategy line (or nothing).
const testTrafficExtension = `---
apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata:
  name: sticky-canary-my-app
  namespace: %s
spec:
%s
  phase: AUTHN
  wasm:
    url: %s
    sha256: '%s'
    pluginName: sticky-canary
%s
    pluginConfig:
      header: x-canary-version
`

// aksGatewaySelector attaches to the AKS add-on's external ingress gateway.
const aksGatewaySelector = `  selector:
    matchLabels:
      istio: aks-istio-ingressgateway-external`

// gatewayAPITargetRefs attaches to the pods of the Gateway API Gateway in testGatewayAPI.
const gatewayAPITargetRefs = `  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: gateway-my-app`

// trafficExtensionResource is the ECDS name istiod gives a native TrafficExtension NAME in
// NAMESPACE: extensions.istio.io/trafficextension/NAMESPACE.NAME (a WasmPlugin's synthetic
// one has "~istio-translated-wasmplugin" after NAME).
func trafficExtensionResource(namespace string) string {
	return "extensions.istio.io/trafficextension/" + namespace + ".sticky-canary-my-app"
}

// withoutEnvoyFilter is a test manifest set up to (not including) its EnvoyFilter document:
// the routing objects only, so the TrafficExtension is the only way our filter gets in.
func withoutEnvoyFilter(t *testing.T, manifests string) string {
	t.Helper()
	i := strings.Index(manifests, "---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n")
	if i < 0 {
		t.Fatal("the test manifests have no EnvoyFilter document to cut")
	}
	return manifests[:i]
}

// writeTrafficExtension writes routing manifests plus one TrafficExtension into a new dir.
func writeTrafficExtension(t *testing.T, routing, namespace, attach, url, sha, failStrategy string) string {
	t.Helper()
	fs := ""
	if failStrategy != "" {
		fs = "    failStrategy: " + failStrategy
	}
	yaml := routing + fmt.Sprintf(testTrafficExtension, namespace, attach, url, sha, fs)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifests.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ociRegistry runs an in-memory OCI distribution registry over plain http and returns its
// host:port.
func ociRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushWasmImage pushes module as a Wasm image of the "compat" variant istio-agent reads (one
// OCI tar+gzip layer holding plugin.wasm) to host/repo:tag, and returns the manifest
// digest's hex, what `sha256` names for an oci:// url.
func pushWasmImage(t *testing.T, host, repoTag string, module []byte) string {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "plugin.wasm", Mode: 0o644, Size: int64(len(module)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(module); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(gz.Bytes(), types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.Hex
}

// checkTrafficExtensionOutput checks what translate made of one TrafficExtension: the ECDS
// resource of that name reported in summary.json (on disk too), the gateway's HCM chain
// referencing its file over config_discovery ahead of the router, and the agent's outcome.
func checkTrafficExtensionOutput(t *testing.T, out string, sum *Summary, resource, wantOutcome, wantErr string, module []byte) {
	t.Helper()
	if len(sum.ExtensionConfigs) != 1 {
		t.Fatalf("extension configs %+v, want just %s", sum.ExtensionConfigs, resource)
	}
	ec := sum.ExtensionConfigs[0]
	if ec.Name != resource || ec.File != "ecds/"+FileName(resource) || ec.Outcome != wantOutcome {
		t.Fatalf("extension config %+v, want %s in ecds/%s with outcome %s", ec, resource, FileName(resource), wantOutcome)
	}
	if !strings.Contains(ec.Error, wantErr) || (wantErr == "") != (ec.Error == "") {
		t.Errorf("error %q, want it to mention %q", ec.Error, wantErr)
	}

	// summary.json as the Rust side reads it.
	js := readJSON(t, filepath.Join(out, "summary.json"))
	reported, _ := js["extension_configs"].([]any)
	if len(reported) != 1 || reported[0].(map[string]any)["name"] != resource || reported[0].(map[string]any)["outcome"] != wantOutcome {
		t.Errorf("summary.json extension_configs %v, want %s (%s)", js["extension_configs"], resource, wantOutcome)
	}

	// The HCM chain: our filter, configured over ECDS from that file, before the router.
	lds, err := os.ReadFile(filepath.Join(out, "lds.json"))
	if err != nil {
		t.Fatal(err)
	}
	hf := httpFilterNames(t, lds)
	at, router := -1, -1
	for i, n := range hf {
		switch n {
		case resource:
			at = i
		case "envoy.filters.http.router":
			router = i
		}
	}
	if at < 0 || router < 0 || at > router {
		t.Errorf("http filters %v: want %s before the router", hf, resource)
	}
	if want := `"path": "` + filepath.Join(out, ec.File) + `"`; !strings.Contains(string(lds), want) {
		t.Errorf("lds.json does not read the filter's config from %s", want)
	}

	ecds, err := os.ReadFile(filepath.Join(out, ec.File))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ecds), `"name": "`+resource+`"`) {
		t.Errorf("ECDS file does not hold %s:\n%s", resource, ecds)
	}
	switch wantOutcome {
	case OutcomeWasm:
		got, err := os.ReadFile(ec.LocalFile)
		if err != nil || !bytes.Equal(got, module) {
			t.Errorf("local module %s: %v", ec.LocalFile, err)
		}
		for _, want := range []string{ec.LocalFile, `"root_id": "sticky-canary"`, `x-canary-version`} {
			if !strings.Contains(string(ecds), want) {
				t.Errorf("ECDS file lacks %s:\n%s", want, ecds)
			}
		}
		if strings.Contains(string(ecds), "http_uri") {
			t.Errorf("ECDS file still fetches remotely:\n%s", ecds)
		}
	case OutcomeRBACAllow, OutcomeRBACDeny:
		if !strings.Contains(string(ecds), "envoy.extensions.filters.http.rbac.v3.RBAC") {
			t.Errorf("ECDS file is not the RBAC fallback:\n%s", ecds)
		}
	}
}

// TestTranslateTrafficExtension: a native TrafficExtension selecting the AKS gateway goes
// through istiod and istio-agent exactly as a WasmPlugin does: the module is fetched over
// https or from an OCI registry and checked against sha256, and a failed fetch or check puts
// in the agent's RBAC filter, allow-all only for FAIL_OPEN.
func TestTranslateTrafficExtension(t *testing.T) {
	tlsURL, stopTLS, err := ServeFile(writeFile(t, "plugin.wasm", minimalWasm), true)
	if err != nil {
		t.Fatal(err)
	}
	defer stopTLS()
	tlsHost := mustHost(t, tlsURL)
	reg := ociRegistry(t)
	digest := pushWasmImage(t, reg, "sticky-canary:0.1.0", minimalWasm)
	ociURL := "oci://" + reg + "/sticky-canary:0.1.0"
	good := sha256Hex(minimalWasm)
	wrong := strings.Repeat("0", 64)
	closedHTTPS := strings.Replace(closedPortURL(t), "http://", "https://", 1)
	routing := withoutEnvoyFilter(t, testManifests)

	cases := []struct {
		name, url, sha, failStrategy string
		insecure                     []string
		wantOutcome, wantErr         string
	}{
		{"https, right sha256", tlsURL, good, "FAIL_CLOSE", []string{tlsHost}, OutcomeWasm, ""},
		{"oci, right digest", ociURL, digest, "FAIL_CLOSE", []string{reg}, OutcomeWasm, ""},
		{"oci, no sha256", ociURL, "", "", []string{reg}, OutcomeWasm, ""},
		{"https, wrong sha256, FAIL_OPEN", tlsURL, wrong, "FAIL_OPEN", []string{tlsHost}, OutcomeRBACAllow, "checksum"},
		{"https, wrong sha256, FAIL_CLOSE", tlsURL, wrong, "FAIL_CLOSE", []string{tlsHost}, OutcomeRBACDeny, "checksum"},
		{"oci, wrong digest, FAIL_OPEN", ociURL, wrong, "FAIL_OPEN", []string{reg}, OutcomeRBACAllow, "does not match"},
		{"https, self-signed, not allowed", tlsURL, good, "FAIL_OPEN", nil, OutcomeRBACAllow, "certificate"},
		{"https, nothing listening, FAIL_OPEN", closedHTTPS, good, "FAIL_OPEN", []string{"*"}, OutcomeRBACAllow, "download failed"},
		{"https, nothing listening, no failStrategy (FAIL_CLOSE)", closedHTTPS, good, "", []string{"*"}, OutcomeRBACDeny, "download failed"},
		// The agent's fallback knows open or closed only: FAIL_RELOAD (Envoy's reload on a VM
		// failure) gets the deny-all filter when the module cannot be fetched.
		{"https, nothing listening, FAIL_RELOAD", closedHTTPS, good, "FAIL_RELOAD", []string{"*"}, OutcomeRBACDeny, "download failed"},
		{"oci, no such image, FAIL_OPEN", "oci://" + reg + "/no-such:0.1.0", good, "FAIL_OPEN", []string{reg}, OutcomeRBACAllow, "could not fetch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			input := writeTrafficExtension(t, routing, "aks-istio-ingress", aksGatewaySelector, c.url, c.sha, c.failStrategy)
			out, sum := translateFetching(t, input, 1, c.insecure)
			checkTrafficExtensionOutput(t, out, sum, trafficExtensionResource("aks-istio-ingress"), c.wantOutcome, c.wantErr, minimalWasm)
		})
	}
}

// TestIstiodTranslatesTrafficExtension checks istiod's ECDS resource itself, before the
// agent rewrites it: a remote data source with the url and sha256, failStrategy as Envoy's
// failure_policy, pluginName as root_id, pluginConfig as JSON.
func TestIstiodTranslatesTrafficExtension(t *testing.T) {
	const url = "https://modules.example.com/sticky-canary.wasm"
	sha := sha256Hex(minimalWasm)
	routing := withoutEnvoyFilter(t, testManifests)
	for _, c := range []struct {
		failStrategy string
		want         wasmextensions.FailurePolicy
	}{
		{"", wasmextensions.FailurePolicy_FAIL_CLOSED}, // FAIL_CLOSE is the enum's zero value
		{"FAIL_OPEN", wasmextensions.FailurePolicy_FAIL_OPEN},
		{"FAIL_CLOSE", wasmextensions.FailurePolicy_FAIL_CLOSED},
		{"FAIL_RELOAD", wasmextensions.FailurePolicy_FAIL_RELOAD},
	} {
		t.Run("failStrategy "+c.failStrategy, func(t *testing.T) {
			in, err := LoadInputs([]string{writeTrafficExtension(t, routing, "aks-istio-ingress", aksGatewaySelector, url, sha, c.failStrategy)})
			if err != nil {
				t.Fatal(err)
			}
			x, err := GenerateXDS(in, testGateway(), testIstioVersion(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(x.ExtensionConfigs) != 1 || len(x.MissingExtensionConfigs) != 0 {
				t.Fatalf("%d extension configs, missing %v", len(x.ExtensionConfigs), x.MissingExtensionConfigs)
			}
			ec := &core.TypedExtensionConfig{}
			if err := x.ExtensionConfigs[0].UnmarshalTo(ec); err != nil {
				t.Fatal(err)
			}
			if ec.Name != trafficExtensionResource("aks-istio-ingress") {
				t.Errorf("ECDS name %q, want %q", ec.Name, trafficExtensionResource("aks-istio-ingress"))
			}
			w := &httpwasm.Wasm{}
			if err := ec.GetTypedConfig().UnmarshalTo(w); err != nil {
				t.Fatalf("ECDS %s is not an HTTP Wasm filter: %v", ec.Name, err)
			}
			pc := w.GetConfig()
			remoteSrc := pc.GetVmConfig().GetCode().GetRemote()
			if remoteSrc.GetHttpUri().GetUri() != url || remoteSrc.GetSha256() != sha {
				t.Errorf("code %v, want remote %s sha256 %s", pc.GetVmConfig().GetCode(), url, sha)
			}
			if pc.GetFailurePolicy() != c.want || pc.GetRootId() != "sticky-canary" || pc.GetName() != "aks-istio-ingress.sticky-canary-my-app" {
				t.Errorf("failure_policy %v root_id %q name %q, want %v, sticky-canary, aks-istio-ingress.sticky-canary-my-app",
					pc.GetFailurePolicy(), pc.GetRootId(), pc.GetName(), c.want)
			}
			sv := &wrapperspb.StringValue{}
			if err := pc.GetConfiguration().UnmarshalTo(sv); err != nil || sv.GetValue() != `{"header":"x-canary-version"}` {
				t.Errorf("configuration %v (%v), want the pluginConfig as JSON", pc.GetConfiguration(), err)
			}
			// The filter asks for the Wasm or the agent's RBAC fallback.
			found := false
			for _, l := range x.Listeners {
				for _, fc := range allFilterChains(l) {
					for _, f := range fc.Filters {
						h, ok, err := unmarshalHCM(f)
						if err != nil || !ok {
							continue
						}
						for _, hf := range h.HttpFilters {
							if hf.Name != ec.Name {
								continue
							}
							found = true
							urls := strings.Join(hf.GetConfigDiscovery().GetTypeUrls(), ",")
							if !strings.Contains(urls, "envoy.extensions.filters.http.wasm.v3.Wasm") || !strings.Contains(urls, "envoy.extensions.filters.http.rbac.v3.RBAC") {
								t.Errorf("filter %s type_urls %s", hf.Name, urls)
							}
						}
					}
				}
			}
			if !found {
				t.Errorf("no listener's HCM has the filter %s", ec.Name)
			}
		})
	}
}

// TestTranslateTrafficExtensionTargetRefs: a TrafficExtension attached with targetRefs to a
// Gateway API Gateway lands on that Gateway's own pods, and not on the add-on's gateway.
func TestTranslateTrafficExtensionTargetRefs(t *testing.T) {
	tlsURL, stopTLS, err := ServeFile(writeFile(t, "plugin.wasm", minimalWasm), true)
	if err != nil {
		t.Fatal(err)
	}
	defer stopTLS()
	gatewayPods, err := ParseProxy("gateway", "ns-canary-istio", []string{"gateway.networking.k8s.io/gateway-name=gateway-my-app"}, "")
	if err != nil {
		t.Fatal(err)
	}
	routing := withoutEnvoyFilter(t, testGatewayAPI)
	closedHTTPS := strings.Replace(closedPortURL(t), "http://", "https://", 1)
	cases := []struct {
		name                 string
		proxy                Proxy
		url, failStrategy    string
		wantOutcome, wantErr string
	}{
		{"the Gateway's pods, module fetched", gatewayPods, tlsURL, "FAIL_CLOSE", OutcomeWasm, ""},
		{"the Gateway's pods, bad url, FAIL_OPEN", gatewayPods, closedHTTPS, "FAIL_OPEN", OutcomeRBACAllow, "download failed"},
		{"the add-on's gateway gets nothing", testGateway(), tlsURL, "FAIL_CLOSE", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			sum, err := Translate(TranslateOptions{
				IstioVersion: testIstioVersion(t),
				Inputs:       []string{writeTrafficExtension(t, routing, "ns-canary-istio", gatewayAPITargetRefs, c.url, sha256Hex(minimalWasm), c.failStrategy)},
				OutDir:       out,
				Proxy:        c.proxy,
				Listen:       map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
				Endpoints:    map[string][]SocketAddr{gwapiV1Cluster: {{"127.0.0.1", 34001}}, gwapiV2Cluster: {{"127.0.0.1", 34002}}},
				Agent:        AgentOptions{FetchTimeout: 2 * time.Second, FetchAttempts: 1, InsecureRegistries: []string{"*"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.wantOutcome == "" {
				if len(sum.ExtensionConfigs) != 0 {
					t.Errorf("extension configs %+v, want none", sum.ExtensionConfigs)
				}
				return
			}
			checkTrafficExtensionOutput(t, out, sum, trafficExtensionResource("ns-canary-istio"), c.wantOutcome, c.wantErr, minimalWasm)
		})
	}
}

// TestTrafficExtensionInputValidation: translate --in validates a TrafficExtension as
// istiod's admission webhook does (crd.ParseInputs runs the kind's ValidateProto), and says
// which file, object and rule.
func TestTrafficExtensionInputValidation(t *testing.T) {
	const head = "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: te, namespace: ns}\nspec:\n"
	cases := []struct{ name, spec, want string }{
		{"neither wasm nor lua", "  phase: AUTHN\n", "exactly one of wasm or lua must be set"},
		{"selector and targetRefs", "  selector: {matchLabels: {app: a}}\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n  wasm: {url: 'oci://example.com/p:1'}\n", "only one of targetRefs or workloadSelector can be set"},
		{"url scheme", "  wasm: {url: 'ftp://example.com/p.wasm'}\n", "url contains unsupported scheme: ftp"},
		{"sha256", "  wasm: {url: 'oci://example.com/p:1', sha256: 'abc'}\n", "sha256"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := writeFile(t, "te.yaml", []byte(head+c.spec))
			_, err := LoadInputs([]string{in})
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "te.yaml") || !strings.Contains(err.Error(), "TrafficExtension/ns/te") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want an InputError naming te.yaml, TrafficExtension/ns/te and %q", err, c.want)
			}
		})
	}
	// A valid one is an Istio config for istiod, not an ignored object.
	in := writeFile(t, "te.yaml", []byte(head+"  wasm: {url: 'oci://example.com/p:1'}\n"))
	got, err := LoadInputs([]string{in})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Configs) != 1 || got.Configs[0].GroupVersionKind.Kind != "TrafficExtension" || len(got.Ignored) != 0 {
		t.Errorf("configs %v ignored %v", got.Configs, got.Ignored)
	}

	// wasm and lua together pass the webhook's validation: decoding into the proto keeps
	// one member of the filter_config oneof (lua), so ValidateTrafficExtension never sees
	// both, and istiod installs the Lua filter. A cluster's API server rejects the object
	// before the webhook runs (the CRD's oneOf and CEL rule `has(self.wasm) !=
	// has(self.lua)`): that is what crd-check is for (TestCRDCheck).
	in = writeFile(t, "te.yaml", []byte(head+"  wasm: {url: 'oci://example.com/p:1'}\n  lua: {inlineCode: 'function envoy_on_request(h) end'}\n"))
	got, err = LoadInputs([]string{in})
	if err != nil {
		t.Fatalf("wasm and lua: %v (if the webhook validation now rejects this, update this test and the README)", err)
	}
	spec, ok := got.Configs[0].Spec.(*extensions.TrafficExtension)
	if !ok || spec.GetLua() == nil || spec.GetWasm() != nil {
		t.Errorf("wasm and lua: spec %v, want the Lua member only", got.Configs[0].Spec)
	}
}
