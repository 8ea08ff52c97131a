package oracle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testGatewayAPI is what sticky-canary renders for `ingress: gateway-api`, reduced: a
// Gateway of class istio on 80, an HTTPRoute that sends the routing header plus its token to
// the canary's own Service (removing the token) and everything else to stable's, mirroring
// half of stable's requests to the canary, the per-version Services, and the EnvoyFilter
// pair selecting that Gateway's own pods by the label Istio puts on them. The last Service
// stands in for the one Istio's deployment controller creates for the Gateway
// (NAME-istio, selecting gateway.networking.k8s.io/gateway-name); pilot's fake server
// runs no deployment controller. Fields the API server would default from the CRD
// (match path, header match type) are written out: the fake API server applies no defaults,
// and sticky-canary renders them explicitly for that reason.
const testGatewayAPI = `
apiVersion: v1
kind: Namespace
metadata:
  name: ns-canary-istio
---
apiVersion: v1
kind: Service
metadata: {name: svc-my-app-v1, namespace: ns-canary-istio}
spec:
  selector: {app: my-app, version: v1}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-my-app-v2, namespace: ns-canary-istio}
spec:
  selector: {app: my-app, version: v2}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: gateway-my-app-istio, namespace: ns-canary-istio}
spec:
  selector: {gateway.networking.k8s.io/gateway-name: gateway-my-app}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-my-app, namespace: ns-canary-istio}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-my-app, namespace: ns-canary-istio}
spec:
  parentRefs: [{name: gateway-my-app}]
  hostnames: [my-app.example.com]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
      headers:
      - {type: Exact, name: x-canary-version, value: v2}
      - {type: Exact, name: x-canary-token, value: secret-token}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {remove: [x-canary-token]}
    backendRefs: [{name: svc-my-app-v2, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {remove: [x-canary-token]}
    - type: RequestMirror
      requestMirror:
        backendRef: {name: svc-my-app-v2, port: 80}
        percent: 50
    backendRefs: [{name: svc-my-app-v1, port: 80}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: sticky-canary-my-app
  namespace: ns-canary-istio
spec:
  workloadSelector:
    labels:
      gateway.networking.k8s.io/gateway-name: gateway-my-app
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
            fail_open: true
            vm_config:
              vm_id: sticky-canary-my-app
              runtime: envoy.wasm.runtime.v8
              code:
                remote:
                  http_uri: {uri: %s, timeout: 5s, cluster: _}
                  sha256: "0000000000000000000000000000000000000000000000000000000000000000"
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: sticky-canary-my-app
        config_discovery:
          config_source: {ads: {}, initial_fetch_timeout: 0s}
          type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm, type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC]
`

const (
	gwapiV1Cluster = "outbound|80||svc-my-app-v1.ns-canary-istio.svc.cluster.local"
	gwapiV2Cluster = "outbound|80||svc-my-app-v2.ns-canary-istio.svc.cluster.local"
)

// TestTranslateGatewayAPI checks that Gateway API objects reach istiod's Gateway API
// controller (they go in as Kubernetes objects) and what it makes of them for the Gateway's
// own pods: the HTTPRoute's header match, token removal and mirror, and our filter, which
// the add-on's gateway does not get.
func TestTranslateGatewayAPI(t *testing.T) {
	dir := t.TempDir()
	manifests := strings.Replace(testGatewayAPI, "%s", closedPortURL(t), 1)
	if err := os.WriteFile(filepath.Join(dir, "manifests.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	gatewayPods, err := ParseProxy("gateway", "ns-canary-istio", []string{"gateway.networking.k8s.io/gateway-name=gateway-my-app"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                        string
		proxy                       Proxy
		wantRoutes                  string
		wantInRoute, wantNotInRoute []string
		wantExtensions              int
	}{
		{
			name: "the Gateway's own pods", proxy: gatewayPods, wantRoutes: "http.80",
			wantInRoute: []string{
				`"name": "my-app.example.com:80"`, `"name": "x-canary-version"`, `"exact": "v2"`,
				`"name": "x-canary-token"`, `"exact": "secret-token"`, `"request_headers_to_remove": [`,
				`"cluster": "` + gwapiV2Cluster + `"`, `"cluster": "` + gwapiV1Cluster + `"`,
				`"request_mirror_policies": [`, `"numerator": 500000`,
			},
			wantExtensions: 1,
		},
		{
			name: "the add-on's gateway serves none of it", proxy: testGateway(), wantRoutes: "",
			wantExtensions: 0,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			sum, err := Translate(TranslateOptions{
				IstioVersion: testIstioVersion(t),
				Inputs:       []string{dir}, OutDir: out, Proxy: c.proxy,
				Listen:    map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
				Endpoints: map[string][]SocketAddr{gwapiV1Cluster: {{"127.0.0.1", 34001}}, gwapiV2Cluster: {{"127.0.0.1", 34002}}},
				Agent:     AgentOptions{FetchTimeout: time.Second, FetchAttempts: 1},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(sum.IgnoredObjects) != 0 {
				t.Errorf("ignored objects %v: Gateway API kinds must reach istiod", sum.IgnoredObjects)
			}
			if got := strings.Join(sum.Routes, ","); got != c.wantRoutes {
				t.Fatalf("routes %q, want %q (listeners %v, dropped %v)", got, c.wantRoutes, sum.Listeners, sum.Dropped)
			}
			if len(sum.ExtensionConfigs) != c.wantExtensions {
				t.Errorf("extension configs %+v, want %d", sum.ExtensionConfigs, c.wantExtensions)
			}
			if c.wantRoutes == "" {
				return
			}
			rds, err := os.ReadFile(filepath.Join(out, sum.RouteFiles[c.wantRoutes]))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range c.wantInRoute {
				if !strings.Contains(string(rds), want) {
					t.Errorf("route %s lacks %s:\n%s", c.wantRoutes, want, rds)
				}
			}
		})
	}
}
