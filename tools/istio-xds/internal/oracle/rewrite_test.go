package oracle

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rawAny builds an Any of a type this binary may not know (istio-proxy-only configs).
func rawAny(typeURL string) *anypb.Any { return &anypb.Any{TypeUrl: typeURL} }

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
}

func TestFileName(t *testing.T) {
	cases := []struct{ name, want string }{
		{"http.80", "http.80.json"},
		{"https.443.https.gateway-my-app.ns-canary-istio", "https.443.https.gateway-my-app.ns-canary-istio.json"},
		{"sticky-canary-my-app", "sticky-canary-my-app.json"},
		{"a/b~c", "a_b_c-"},
		{".hidden", "_hidden-"},
		{"", "-"},
	}
	for _, c := range cases {
		got := FileName(c.name)
		if strings.HasSuffix(c.want, "-") {
			// Replaced characters: the prefix plus a hash of the original name.
			if !strings.HasPrefix(got, c.want) || len(got) != len(c.want)+8+len(".json") {
				t.Errorf("FileName(%q) = %q, want %s<8 hex>.json", c.name, got, c.want)
			}
			continue
		}
		if got != c.want {
			t.Errorf("FileName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	// Names that sanitize alike must still get different files.
	if FileName("a/b") == FileName("a~b") {
		t.Errorf("FileName collision: %q", FileName("a/b"))
	}
}

func TestParseSocketAddr(t *testing.T) {
	cases := []struct {
		in      string
		want    SocketAddr
		wantErr bool
	}{
		{"127.0.0.1:18080", SocketAddr{"127.0.0.1", 18080}, false},
		{"[::1]:80", SocketAddr{"::1", 80}, false},
		{"localhost:80", SocketAddr{}, true}, // STATIC clusters need IP literals
		{"127.0.0.1", SocketAddr{}, true},
		{"127.0.0.1:99999", SocketAddr{}, true},
	}
	for _, c := range cases {
		got, err := ParseSocketAddr(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseSocketAddr(%q) = %v, %v; want %v, err=%v", c.in, got, err, c.want, c.wantErr)
		}
	}
}

// gatewayListener is a listener shaped like istiod's gateway listeners.
func gatewayListener(t *testing.T, port uint32, filters []*hcm.HttpFilter, ts *core.TransportSocket) *listener.Listener {
	h := &hcm.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_80",
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: adsSource(), RouteConfigName: "http.80",
		}},
		HttpFilters: filters,
	}
	return &listener.Listener{
		Name: "0.0.0.0_" + itoa(port),
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listener.FilterChain{{
			Filters: []*listener.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(t, h)},
			}},
			TransportSocket: ts,
		}},
	}
}

func itoa(p uint32) string { return strconv.Itoa(int(p)) }

func TestRewriteListeners(t *testing.T) {
	peerMetadata := mustAny(t, &xdstype.TypedStruct{TypeUrl: "type.googleapis.com/io.istio.http.peer_metadata.Config", Value: &structpb.Struct{}})
	filters := func() []*hcm.HttpFilter {
		return []*hcm.HttpFilter{
			{Name: "istio.metadata_exchange", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: peerMetadata}},
			{Name: "istio.alpn", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: rawAny("type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig")}},
			{Name: "istio.stats", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: rawAny("type.googleapis.com/stats.PluginConfig")}},
			// Ours, even with a type on the list, stays: protected by name.
			{Name: "sticky-canary-inline", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: rawAny("type.googleapis.com/stats.PluginConfig")}},
			{Name: "sticky-canary-my-app", ConfigType: &hcm.HttpFilter_ConfigDiscovery{ConfigDiscovery: &core.ExtensionConfigSource{
				ConfigSource: adsSource(),
				TypeUrls:     []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"},
			}}},
			{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &router.Router{})}},
		}
	}
	sdsTLS := &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{
		TypedConfig: mustAny(t, &tls.DownstreamTlsContext{CommonTlsContext: &tls.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{{Name: "kubernetes://my-app-tls", SdsConfig: adsSource()}},
		}}),
	}}

	cases := []struct {
		name        string
		listeners   []*listener.Listener
		listen      map[uint32]SocketAddr
		wantKept    []string
		wantBind    string
		wantFilters []string
		wantDropped []string
	}{
		{
			name:        "port 80 rebound, istio-only filters removed, ours kept",
			listeners:   []*listener.Listener{gatewayListener(t, 80, filters(), nil)},
			listen:      map[uint32]SocketAddr{80: {"127.0.0.1", 18080}},
			wantKept:    []string{"0.0.0.0_80"},
			wantBind:    "127.0.0.1:18080",
			wantFilters: []string{"sticky-canary-inline", "sticky-canary-my-app", "envoy.filters.http.router"},
			wantDropped: []string{
				"listener 0.0.0.0_80: http filter istio.metadata_exchange: peer_metadata",
				"listener 0.0.0.0_80: http filter istio.alpn: istio.alpn",
				"listener 0.0.0.0_80: http filter istio.stats: istio.stats",
			},
		},
		{
			name:        "unlisted port dropped",
			listeners:   []*listener.Listener{gatewayListener(t, 80, filters(), nil), gatewayListener(t, 8443, nil, nil)},
			listen:      map[uint32]SocketAddr{8443: {"127.0.0.1", 18443}},
			wantKept:    []string{"0.0.0.0_8443"},
			wantBind:    "127.0.0.1:18443",
			wantDropped: []string{"listener 0.0.0.0_80: port 80 not in --listen"},
		},
		{
			name:        "listed TLS listener needing SDS dropped",
			listeners:   []*listener.Listener{gatewayListener(t, 443, nil, sdsTLS)},
			listen:      map[uint32]SocketAddr{443: {"127.0.0.1", 18443}},
			wantDropped: []string{"listener 0.0.0.0_443: port 443 is in --listen but its TLS needs an SDS secret"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rw := &Rewriter{OutDir: "/out", Listen: c.listen}
			kept, err := rw.RewriteListeners(c.listeners)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range kept {
				names = append(names, l.Name)
			}
			if strings.Join(names, ",") != strings.Join(c.wantKept, ",") {
				t.Fatalf("kept %v, want %v", names, c.wantKept)
			}
			if len(rw.Dropped) != len(c.wantDropped) {
				t.Fatalf("dropped %q, want %q", rw.Dropped, c.wantDropped)
			}
			for i, d := range c.wantDropped {
				if !strings.HasPrefix(rw.Dropped[i], d) {
					t.Errorf("dropped[%d] = %q, want prefix %q", i, rw.Dropped[i], d)
				}
			}
			if len(kept) == 0 {
				return
			}
			l := kept[0]
			sa := l.Address.GetSocketAddress()
			if got := (SocketAddr{sa.Address, sa.GetPortValue()}).String(); got != c.wantBind {
				t.Errorf("bound to %s, want %s", got, c.wantBind)
			}
			h, _, err := unmarshalHCM(l.FilterChains[0].Filters[0])
			if err != nil {
				t.Fatal(err)
			}
			rds := h.GetRds().ConfigSource.GetPathConfigSource()
			if rds.GetPath() != "/out/rds/http.80.json" || rds.GetWatchedDirectory().GetPath() != "/out/rds" {
				t.Errorf("rds source = %v", rds)
			}
			var got []string
			for _, hf := range h.HttpFilters {
				got = append(got, hf.Name)
				if cd := hf.GetConfigDiscovery(); cd != nil {
					p := cd.ConfigSource.GetPathConfigSource()
					if p.GetPath() != "/out/ecds/"+hf.Name+".json" || p.GetWatchedDirectory().GetPath() != "/out/ecds" {
						t.Errorf("ecds source of %s = %v", hf.Name, p)
					}
				}
			}
			if c.wantFilters != nil && strings.Join(got, ",") != strings.Join(c.wantFilters, ",") {
				t.Errorf("http filters %v, want %v", got, c.wantFilters)
			}
		})
	}
}

func TestRewriteClusters(t *testing.T) {
	sdsMatch := &cluster.Cluster_TransportSocketMatch{
		Name: "tlsMode-istio",
		TransportSocket: &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tls.UpstreamTlsContext{CommonTlsContext: &tls.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{{Name: "default", SdsConfig: &core.ConfigSource{
					ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{}},
				}}},
			}}),
		}},
	}
	plainMatch := &cluster.Cluster_TransportSocketMatch{Name: "tlsMode-disabled", TransportSocket: &core.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"}}
	eds := func(name string) *cluster.Cluster {
		return &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
			TransportSocketMatches: []*cluster.Cluster_TransportSocketMatch{
				proto.Clone(sdsMatch).(*cluster.Cluster_TransportSocketMatch),
				proto.Clone(plainMatch).(*cluster.Cluster_TransportSocketMatch),
			},
			Filters: []*cluster.Filter{{Name: "istio.metadata_exchange", TypedConfig: rawAny("type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange")}},
		}
	}
	v1 := "outbound|80|v1|svc.ns.svc.cluster.local"
	cases := []struct {
		name         string
		cluster      *cluster.Cluster
		endpoints    map[string][]SocketAddr
		wantType     cluster.Cluster_DiscoveryType
		wantEPs      []string
		wantMatches  []string
		wantWarnings int
	}{
		{
			name:        "EDS becomes STATIC with mapped endpoints",
			cluster:     eds(v1),
			endpoints:   map[string][]SocketAddr{v1: {{"127.0.0.1", 34001}, {"127.0.0.1", 34002}}},
			wantType:    cluster.Cluster_STATIC,
			wantEPs:     []string{"127.0.0.1:34001", "127.0.0.1:34002"},
			wantMatches: []string{"tlsMode-disabled"},
		},
		{
			name:        "unmapped EDS cluster has no endpoints",
			cluster:     eds(v1),
			wantType:    cluster.Cluster_STATIC,
			wantMatches: []string{"tlsMode-disabled"},
		},
		{
			name:         "non-EDS cluster kept, endpoints for it and for unknown clusters warned about",
			cluster:      &cluster.Cluster{Name: "BlackHoleCluster", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}},
			endpoints:    map[string][]SocketAddr{"BlackHoleCluster": {{"127.0.0.1", 1}}, "nope": {{"127.0.0.1", 2}}},
			wantType:     cluster.Cluster_STATIC,
			wantWarnings: 2,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rw := &Rewriter{OutDir: "/out", Endpoints: c.endpoints}
			out, err := rw.RewriteClusters([]*cluster.Cluster{c.cluster})
			if err != nil {
				t.Fatal(err)
			}
			cl := out[0]
			if cl.GetType() != c.wantType || cl.EdsClusterConfig != nil {
				t.Errorf("type %v eds %v, want %v and no eds config", cl.GetType(), cl.EdsClusterConfig, c.wantType)
			}
			var eps []string
			for _, loc := range cl.GetLoadAssignment().GetEndpoints() {
				for _, ep := range loc.LbEndpoints {
					sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
					eps = append(eps, SocketAddr{sa.Address, sa.GetPortValue()}.String())
				}
			}
			if strings.Join(eps, ",") != strings.Join(c.wantEPs, ",") {
				t.Errorf("endpoints %v, want %v", eps, c.wantEPs)
			}
			var matches []string
			for _, m := range cl.TransportSocketMatches {
				matches = append(matches, m.Name)
			}
			if strings.Join(matches, ",") != strings.Join(c.wantMatches, ",") {
				t.Errorf("transport socket matches %v, want %v", matches, c.wantMatches)
			}
			if len(cl.Filters) != 0 {
				t.Errorf("upstream filters %v, want none", cl.Filters)
			}
			if len(rw.Warnings) != c.wantWarnings {
				t.Errorf("warnings %q, want %d", rw.Warnings, c.wantWarnings)
			}
		})
	}
}

func TestRewriteRoutesDropsPerFilterConfigOfRemovedFilters(t *testing.T) {
	rc := &route.RouteConfiguration{Name: "http.80", VirtualHosts: []*route.VirtualHost{{
		Name: "vh",
		TypedPerFilterConfig: map[string]*anypb.Any{
			"istio.stats":          rawAny("type.googleapis.com/stats.PluginConfig"),
			"sticky-canary-my-app": rawAny("type.googleapis.com/stats.PluginConfig"),
			"envoy.filters.http.x": mustAny(t, wrapperspb.String("kept")),
		},
	}}}
	rw := &Rewriter{}
	rw.RewriteRoutes([]*route.RouteConfiguration{rc})
	got := rc.VirtualHosts[0].TypedPerFilterConfig
	if _, ok := got["istio.stats"]; ok || len(got) != 2 || len(rw.Dropped) != 1 {
		t.Errorf("per-filter config %v, dropped %q", got, rw.Dropped)
	}
}

func TestDiscoveryFileIsStable(t *testing.T) {
	a := &route.RouteConfiguration{Name: "r", VirtualHosts: []*route.VirtualHost{{Name: "v", Domains: []string{"*"}}}}
	first, err := discoveryFile([]proto.Message{a})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // protojson varies whitespace at random; we must not
		again, _ := discoveryFile([]proto.Message{proto.Clone(a)})
		if string(again) != string(first) {
			t.Fatalf("output differs between runs:\n%s\n%s", first, again)
		}
	}
	b := proto.Clone(a).(*route.RouteConfiguration)
	b.VirtualHosts[0].Domains = []string{"x"}
	other, _ := discoveryFile([]proto.Message{b})
	if versionOf(t, other) == versionOf(t, first) {
		t.Errorf("version_info did not change with the content")
	}
	if !strings.Contains(string(first), `"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"`) {
		t.Errorf("resources are not Any-typed:\n%s", first)
	}
}

func versionOf(t *testing.T, data []byte) string {
	t.Helper()
	s := string(data)
	i := strings.Index(s, `"version_info": "`)
	if i < 0 {
		t.Fatalf("no version_info in %s", s)
	}
	s = s[i+len(`"version_info": "`):]
	return s[:strings.Index(s, `"`)]
}

func TestWriteAtomicKeepsUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	if err := writeAtomic(path, []byte("a")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := writeAtomic(path, []byte("a")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Errorf("unchanged content was rewritten")
	}
	if err := writeAtomic(path, []byte("b")); err != nil {
		t.Fatal(err)
	}
	changed, _ := os.Stat(path)
	if os.SameFile(before, changed) {
		t.Errorf("changed content did not replace the file by rename")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}
