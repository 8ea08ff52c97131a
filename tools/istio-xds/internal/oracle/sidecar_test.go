package oracle

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testDependent is what sticky-canary renders for a dependent service (a mesh VirtualService
// without gateways, routing on the routing header and the mesh token, and subsets), plus
// the backend's own Service, which render does not emit (the backend's owner does).
const testDependent = `
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: ns-canary-istio
spec:
  selector: {app: backend}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-backend
  namespace: ns-canary-istio
spec:
  hosts: [backend.ns-canary-istio.svc.cluster.local]
  http:
  - name: backend-v2
    match:
    - headers:
        x-canary-version: {exact: v2}
        x-canary-mesh-token: {exact: mesh-token}
    route:
    - destination: {host: backend.ns-canary-istio.svc.cluster.local, subset: v2, port: {number: 80}}
  - name: backend-v1-default
    route:
    - destination: {host: backend.ns-canary-istio.svc.cluster.local, subset: v1, port: {number: 80}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dr-backend
  namespace: ns-canary-istio
spec:
  host: backend.ns-canary-istio.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
`

const (
	backendV1Cluster = "outbound|80|v1|backend.ns-canary-istio.svc.cluster.local"
	backendV2Cluster = "outbound|80|v2|backend.ns-canary-istio.svc.cluster.local"
)

func TestParseProxy(t *testing.T) {
	cases := []struct {
		name, kind, namespace, ip string
		labels                    []string
		want                      Proxy
		wantErr                   string
	}{
		{name: "default is the AKS external gateway",
			want: Proxy{ProxyGateway, "aks-istio-ingress", map[string]string{"istio": "aks-istio-ingressgateway-external"}, "127.0.0.1"}},
		{name: "gateway with its own namespace and labels", kind: "gateway", namespace: "gw", labels: []string{"istio=internal"},
			want: Proxy{ProxyGateway, "gw", map[string]string{"istio": "internal"}, "127.0.0.1"}},
		{name: "sidecar of a frontend pod", kind: "sidecar", namespace: "istio-test", labels: []string{"app=frontend", "version=v1"},
			want: Proxy{ProxySidecar, "istio-test", map[string]string{"app": "frontend", "version": "v1"}, "10.244.0.10"}},
		{name: "sidecar with an IP", kind: "sidecar", namespace: "ns", ip: "10.0.0.5",
			want: Proxy{ProxySidecar, "ns", map[string]string{}, "10.0.0.5"}},
		{name: "label value may hold =", kind: "sidecar", namespace: "ns", labels: []string{"a=b=c"},
			want: Proxy{ProxySidecar, "ns", map[string]string{"a": "b=c"}, "10.244.0.10"}},
		{name: "sidecar needs a namespace", kind: "sidecar", wantErr: "needs --proxy-namespace"},
		{name: "unknown kind", kind: "waypoint", namespace: "ns", wantErr: `--proxy "waypoint"`},
		{name: "label without =", kind: "sidecar", namespace: "ns", labels: []string{"app"}, wantErr: `--proxy-label "app"`},
		{name: "label without key", kind: "sidecar", namespace: "ns", labels: []string{"=x"}, wantErr: `--proxy-label "=x"`},
		{name: "host name for IP", kind: "sidecar", namespace: "ns", ip: "pod.local", wantErr: `--proxy-ip "pod.local"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProxy(c.kind, c.namespace, c.labels, c.ip)
			if c.wantErr != "" {
				var ie *InputError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want an InputError with %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// writeWithDependent writes testManifests (module fetch failing: RBAC allow-all) and
// testDependent into one directory.
func writeWithDependent(t *testing.T) string {
	t.Helper()
	dir := writeManifests(t, closedPortURL(t), strings.Repeat("0", 64), "            fail_open: true")
	if err := os.WriteFile(filepath.Join(dir, "dependent.yaml"), []byte(testDependent), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTranslateForSidecar checks what istiod sends the frontend's sidecar (this is the
// oracle for dependent services: the mesh VirtualService applies to the sidecar's outbound
// route for the backend's port, not to the gateway) and what the rewrite keeps of it.
func TestTranslateForSidecar(t *testing.T) {
	in := writeWithDependent(t)
	sidecar, err := ParseProxy("sidecar", "ns-canary-istio", []string{"app=frontend", "version=v1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		proxy         Proxy
		listen        []uint32
		wantListeners string
		wantRoute     string
		// wantInRoute must be in the route file, wantNotInRoute must not.
		wantInRoute, wantNotInRoute []string
		wantDropped                 []string
		wantExtensions              int
	}{
		{
			name: "gateway: the mesh VirtualService is not its concern", proxy: testGateway(), listen: []uint32{80},
			wantListeners: "0.0.0.0_80", wantRoute: "http.80",
			wantInRoute:    []string{`"name": "my-app.example.com:80"`},
			wantNotInRoute: []string{"mesh-token", backendV2Cluster},
			wantExtensions: 1,
		},
		{
			name: "sidecar: outbound port 80 routes the backend by header and mesh token", proxy: sidecar, listen: []uint32{80},
			wantListeners: "0.0.0.0_80", wantRoute: "80",
			wantInRoute: []string{
				`"name": "backend.ns-canary-istio.svc.cluster.local:80"`, `"backend.ns-canary-istio.svc.cluster.local"`,
				`"name": "x-canary-version"`, `"name": "x-canary-mesh-token"`, `"exact": "mesh-token"`,
				`"cluster": "` + backendV2Cluster + `"`, `"cluster": "` + backendV1Cluster + `"`,
				// The frontend's own Service is reachable from its sidecar too, without subsets.
				`"name": "svc-my-app.ns-canary-istio.svc.cluster.local:80"`,
			},
			wantNotInRoute: []string{"my-app.example.com", "secret-token"},
			wantDropped: []string{
				"listener virtualOutbound: port 15001 not in --listen",
				"listener virtualInbound: port 15006 not in --listen",
				"cluster " + backendV2Cluster + ": transport_socket_match tlsMode-istio (needs Istio SDS certificates)",
			},
		},
		{
			name: "sidecar: inbound listener dropped even when listed", proxy: sidecar, listen: []uint32{80, 15006},
			wantListeners: "0.0.0.0_80", wantRoute: "80",
			wantInRoute: []string{`"cluster": "` + backendV2Cluster + `"`},
			wantDropped: []string{"listener virtualInbound: port 15006 is in --listen but the listener is inbound"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			listen := map[uint32]SocketAddr{}
			for i, p := range c.listen {
				listen[p] = SocketAddr{"127.0.0.1", 18080 + uint32(i)}
			}
			sum, err := Translate(TranslateOptions{
				IstioVersion: testIstioVersion(t),
				Inputs:       []string{in}, OutDir: out, Proxy: c.proxy, Listen: listen,
				Endpoints: map[string][]SocketAddr{backendV1Cluster: {{"127.0.0.1", 34001}}, backendV2Cluster: {{"127.0.0.1", 34002}}},
				Agent:     AgentOptions{FetchTimeout: time.Second, FetchAttempts: 1},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(sum.Listeners, ","); got != c.wantListeners {
				t.Errorf("listeners %s, want %s (dropped: %v)", got, c.wantListeners, sum.Dropped)
			}
			if got := strings.Join(sum.Routes, ","); got != c.wantRoute {
				t.Fatalf("routes %s, want %s", got, c.wantRoute)
			}
			// The gateway plugin's EnvoyFilter selects the gateway's pods only.
			if len(sum.ExtensionConfigs) != c.wantExtensions {
				t.Errorf("extension configs %+v, want %d", sum.ExtensionConfigs, c.wantExtensions)
			}
			rds, err := os.ReadFile(filepath.Join(out, sum.RouteFiles[c.wantRoute]))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range c.wantInRoute {
				if !strings.Contains(string(rds), want) {
					t.Errorf("route %s lacks %s", c.wantRoute, want)
				}
			}
			for _, unwanted := range c.wantNotInRoute {
				if strings.Contains(string(rds), unwanted) {
					t.Errorf("route %s has %s", c.wantRoute, unwanted)
				}
			}
			dropped := strings.Join(sum.Dropped, "\n")
			for _, want := range c.wantDropped {
				if !strings.Contains(dropped, want) {
					t.Errorf("dropped lacks %q:\n%s", want, dropped)
				}
			}
			lds, _ := os.ReadFile(filepath.Join(out, "lds.json"))
			for _, unwanted := range []string{`"bind_to_port"`, `"ads"`, "sds_config", "virtualInbound"} {
				if strings.Contains(string(lds), unwanted) {
					t.Errorf("lds.json has %s", unwanted)
				}
			}
		})
	}
}

// TestEnvoyRunsSidecarTranslation runs upstream Envoy on a sidecar's translation: the
// outbound listener (bind_to_port false in Istio) binds where --listen says, and the mesh
// VirtualService sends the backend host to v2 only with the header and the mesh token.
func TestEnvoyRunsSidecarTranslation(t *testing.T) {
	envoy := envoyBinary(t)
	_, v1 := backend(t, "backend-v1")
	_, v2 := backend(t, "backend-v2")
	sidecar, err := ParseProxy("sidecar", "ns-canary-istio", []string{"app=frontend", "version=v1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	port := freePort(t)
	if _, err := Translate(TranslateOptions{
		IstioVersion: testIstioVersion(t),
		Inputs:       []string{writeWithDependent(t)}, OutDir: out, Proxy: sidecar,
		Listen:    map[uint32]SocketAddr{80: {"127.0.0.1", port}},
		Endpoints: map[string][]SocketAddr{backendV1Cluster: {v1}, backendV2Cluster: {v2}},
		Agent:     AgentOptions{FetchTimeout: time.Second, FetchAttempts: 1},
	}); err != nil {
		t.Fatal(err)
	}
	runEnvoy(t, envoy, out)
	addr := SocketAddr{"127.0.0.1", port}.String()
	cases := []struct {
		name, host string
		headers    map[string]string
		want       string
	}{
		{"no headers", "backend.ns-canary-istio.svc.cluster.local", nil, "backend-v1"},
		{"header and mesh token", "backend.ns-canary-istio.svc.cluster.local", map[string]string{"x-canary-version": "v2", "x-canary-mesh-token": "mesh-token"}, "backend-v2"},
		{"short host name", "backend", map[string]string{"x-canary-version": "v2", "x-canary-mesh-token": "mesh-token"}, "backend-v2"},
		{"guessed mesh token", "backend.ns-canary-istio.svc.cluster.local", map[string]string{"x-canary-version": "v2", "x-canary-mesh-token": "guess"}, "backend-v1"},
		{"header alone", "backend.ns-canary-istio.svc.cluster.local", map[string]string{"x-canary-version": "v2"}, "backend-v1"},
	}
	for _, c := range cases {
		eventually(t, c.name, func() (string, error) { return getHost(addr, c.host, c.headers) }, c.want)
	}
}
