package oracle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// istioOnlyExtensions is THE list of extensions istiod generates for istio-proxy (Istio's
// Envoy build) that upstream Envoy does not have, keyed by the type URL of their config
// (names vary between filter kinds and releases; the type is what Envoy rejects). Each
// was found by running `envoy --mode validate` (upstream Envoy 1.40) on the translated
// gateway config. Our own filters (sticky-canary*, anything fetched over ECDS) are never
// matched: see protectedFilter.
var istioOnlyExtensions = map[string]string{
	// istio.alpn: tells the upstream connection to advertise Istio's mTLS ALPN
	// (istio-http/1.1...) to sidecars; only meaningful with Istio mTLS, which we drop too.
	"type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig": "istio.alpn (Istio mTLS ALPN override)",
	// istio.stats: Istio's telemetry filter (istio_requests_total etc.); observes only.
	"type.googleapis.com/stats.PluginConfig": "istio.stats (Istio telemetry)",
	// istio.metadata_exchange / peer_metadata: exchanges workload metadata with peers for
	// telemetry; observes only.
	"type.googleapis.com/io.istio.http.peer_metadata.Config": "peer_metadata (Istio telemetry metadata exchange)",
	// Network (TCP) variant of the metadata exchange; observes only.
	"type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange": "istio.metadata_exchange (Istio telemetry, TCP)",
}

// protectedFilter: our own filters and anything whose config comes over ECDS (the wasm
// filter or the agent's RBAC fallback) are the point of the test and are never removed.
func protectedFilter(name string, viaECDS bool) bool {
	return viaECDS || strings.HasPrefix(name, "sticky-canary")
}

// extensionType is the type of an extension's config, looking inside TypedStruct wrappers
// (istiod wraps some istio-proxy-only configs that way).
func extensionType(tc *anypb.Any) string {
	if tc == nil {
		return ""
	}
	switch tc.TypeUrl {
	case "type.googleapis.com/xds.type.v3.TypedStruct":
		ts := &xdstype.TypedStruct{}
		if tc.UnmarshalTo(ts) == nil {
			return ts.TypeUrl
		}
	case "type.googleapis.com/udpa.type.v1.TypedStruct":
		ts := &udpatype.TypedStruct{}
		if tc.UnmarshalTo(ts) == nil {
			return ts.TypeUrl
		}
	}
	return tc.TypeUrl
}

// istioOnly returns why an extension must go, or "" to keep it.
func istioOnly(name string, tc *anypb.Any, viaECDS bool) string {
	if protectedFilter(name, viaECDS) {
		return ""
	}
	return istioOnlyExtensions[extensionType(tc)]
}

// SocketAddr is an IP and port.
type SocketAddr struct {
	IP   string
	Port uint32
}

func (a SocketAddr) String() string {
	return net.JoinHostPort(a.IP, strconv.Itoa(int(a.Port)))
}

// ParseSocketAddr parses "ip:port"; STATIC clusters and listeners need IP literals.
func ParseSocketAddr(s string) (SocketAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return SocketAddr{}, fmt.Errorf("%q: want IP:PORT: %v", s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return SocketAddr{}, fmt.Errorf("%q: want an IP address, not a host name", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return SocketAddr{}, fmt.Errorf("%q: bad port: %v", s, err)
	}
	return SocketAddr{IP: ip.String(), Port: uint32(p)}, nil
}

// FileName maps an xDS resource name to a file name: characters other than
// [A-Za-z0-9._-] become '_' (and a leading '.' too, so no name hides or collides with
// our temp files); when anything was replaced, "-" and the first 8 hex digits of the
// name's sha256 follow, so distinct names never share a file. Then ".json".
// E.g. "http.80" -> "http.80.json", "a/b~c" -> "a_b_c-<sha8>.json".
func FileName(name string) string {
	var b strings.Builder
	changed := name == ""
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok || (i == 0 && r == '.') {
			b.WriteByte('_')
			changed = true
			continue
		}
		b.WriteRune(r)
	}
	if changed {
		sum := sha256.Sum256([]byte(name))
		b.WriteString("-" + hex.EncodeToString(sum[:4]))
	}
	return b.String() + ".json"
}

// Rewriter turns the gateway's ADS config into files a standalone upstream Envoy reads.
type Rewriter struct {
	// OutDir is absolute: Envoy resolves paths from its own working directory.
	OutDir string
	// Listen maps a gateway listener port to the address Envoy binds instead.
	Listen map[uint32]SocketAddr
	// Endpoints maps a cluster name to its static endpoints.
	Endpoints map[string][]SocketAddr

	// Dropped lists everything removed, for summary.json.
	Dropped []string
	// Warnings lists what may surprise the caller but is not an error.
	Warnings []string
}

func (r *Rewriter) RoutePath(name string) string {
	return filepath.Join(r.OutDir, "rds", FileName(name))
}

func (r *Rewriter) ECDSPath(name string) string {
	return filepath.Join(r.OutDir, "ecds", FileName(name))
}

func (r *Rewriter) drop(format string, args ...any) {
	r.Dropped = append(r.Dropped, fmt.Sprintf(format, args...))
}

// toPathSource turns an ADS config source into a file one. Envoy reloads path when a file
// is moved into watched_directory, which is how our atomic writes (temp + rename) land.
func toPathSource(cs *core.ConfigSource, path string) error {
	if cs == nil {
		return fmt.Errorf("no config source")
	}
	if cs.GetAds() == nil {
		return fmt.Errorf("config source is not ADS: %v", cs)
	}
	cs.ConfigSourceSpecifier = &core.ConfigSource_PathConfigSource{
		PathConfigSource: &core.PathConfigSource{
			Path:             path,
			WatchedDirectory: &core.WatchedDirectory{Path: filepath.Dir(path)},
		},
	}
	return nil
}

// RewriteListeners keeps the listeners whose port is in Listen, rebinds them, points their
// RDS and ECDS sources at files and removes istio-proxy-only filters.
func (r *Rewriter) RewriteListeners(ls []*listener.Listener) ([]*listener.Listener, error) {
	var kept []*listener.Listener
	for _, l := range ls {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		bind, ok := r.Listen[port]
		if !ok {
			r.drop("listener %s: port %d not in --listen", l.Name, port)
			continue
		}
		if l.TrafficDirection == core.TrafficDirection_INBOUND {
			// A sidecar's inbound side (virtualInbound) takes traffic redirected by iptables
			// and terminates Istio mTLS with the pod's SDS certificate: neither exists here.
			r.drop("listener %s: port %d is in --listen but the listener is inbound (iptables redirect, Istio mTLS)", l.Name, port)
			continue
		}
		if sdsChain(l) {
			// A Gateway server with tls.credentialName gets its certificate over SDS from
			// istiod; a standalone Envoy has no SDS server and would reject the listener.
			r.drop("listener %s: port %d is in --listen but its TLS needs an SDS secret (Gateway credentialName)", l.Name, port)
			r.Warnings = append(r.Warnings, fmt.Sprintf("--listen %d: listener %s dropped, its TLS certificate comes over SDS", port, l.Name))
			continue
		}
		l.Address = &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address:       bind.IP,
			PortSpecifier: &core.SocketAddress_PortValue{PortValue: bind.Port},
		}}}
		// Dual-stack extra addresses would bind the gateway's real port as well.
		l.AdditionalAddresses = nil
		// A sidecar's outbound listeners do not bind (bind_to_port false): iptables sends
		// the app's traffic to virtualOutbound, which hands it on by original destination.
		// Here the test's client connects to the listener itself.
		l.BindToPort = nil
		var lfs []*listener.ListenerFilter
		for _, lf := range l.ListenerFilters {
			if why := istioOnly(lf.Name, lf.GetTypedConfig(), false); why != "" {
				r.drop("listener %s: listener filter %s: %s", l.Name, lf.Name, why)
				continue
			}
			lfs = append(lfs, lf)
		}
		l.ListenerFilters = lfs
		for _, fc := range allFilterChains(l) {
			if err := r.rewriteFilterChain(l.Name, fc); err != nil {
				return nil, fmt.Errorf("listener %s: %v", l.Name, err)
			}
		}
		kept = append(kept, l)
	}
	return kept, nil
}

func sdsChain(l *listener.Listener) bool {
	for _, fc := range allFilterChains(l) {
		if needsSDS(fc.TransportSocket) {
			return true
		}
	}
	return false
}

func (r *Rewriter) rewriteFilterChain(lname string, fc *listener.FilterChain) error {
	var filters []*listener.Filter
	for _, f := range fc.Filters {
		if cd := f.GetConfigDiscovery(); cd != nil {
			if err := toPathSource(cd.ConfigSource, r.ECDSPath(f.Name)); err != nil {
				return fmt.Errorf("network filter %s: %v", f.Name, err)
			}
			filters = append(filters, f)
			continue
		}
		if why := istioOnly(f.Name, f.GetTypedConfig(), false); why != "" {
			r.drop("listener %s: network filter %s: %s", lname, f.Name, why)
			continue
		}
		h, ok, err := unmarshalHCM(f)
		if err != nil {
			return err
		}
		if ok {
			if err := r.rewriteHCM(lname, h); err != nil {
				return err
			}
			tc, err := anypb.New(h)
			if err != nil {
				return err
			}
			f.ConfigType = &listener.Filter_TypedConfig{TypedConfig: tc}
		}
		filters = append(filters, f)
	}
	fc.Filters = filters
	return nil
}

func (r *Rewriter) rewriteHCM(lname string, h *hcm.HttpConnectionManager) error {
	if rds := h.GetRds(); rds != nil {
		if err := toPathSource(rds.ConfigSource, r.RoutePath(rds.RouteConfigName)); err != nil {
			return fmt.Errorf("rds %s: %v", rds.RouteConfigName, err)
		}
	}
	var hfs []*hcm.HttpFilter
	for _, hf := range h.HttpFilters {
		if cd := hf.GetConfigDiscovery(); cd != nil {
			if err := toPathSource(cd.ConfigSource, r.ECDSPath(hf.Name)); err != nil {
				return fmt.Errorf("http filter %s: %v", hf.Name, err)
			}
			hfs = append(hfs, hf)
			continue
		}
		if why := istioOnly(hf.Name, hf.GetTypedConfig(), false); why != "" {
			r.drop("listener %s: http filter %s: %s", lname, hf.Name, why)
			continue
		}
		hfs = append(hfs, hf)
	}
	h.HttpFilters = hfs
	return nil
}

// RewriteClusters turns EDS clusters into STATIC ones with the given endpoints, drops
// transport sockets that need Istio's SDS certificates and istio-proxy-only upstream filters.
func (r *Rewriter) RewriteClusters(cs []*cluster.Cluster) ([]*cluster.Cluster, error) {
	known := map[string]bool{}
	for _, c := range cs {
		known[c.Name] = true
		if c.GetType() == cluster.Cluster_EDS {
			c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
			c.EdsClusterConfig = nil
			c.LoadAssignment = loadAssignment(c.Name, r.Endpoints[c.Name])
		} else if len(r.Endpoints[c.Name]) > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("--endpoints: cluster %s is %s, not EDS: endpoints ignored", c.Name, c.GetType()))
		}
		var matches []*cluster.Cluster_TransportSocketMatch
		for _, m := range c.TransportSocketMatches {
			if needsSDS(m.TransportSocket) {
				r.drop("cluster %s: transport_socket_match %s (needs Istio SDS certificates)", c.Name, m.Name)
				continue
			}
			matches = append(matches, m)
		}
		c.TransportSocketMatches = matches
		if needsSDS(c.TransportSocket) {
			r.drop("cluster %s: transport_socket %s (needs Istio SDS certificates)", c.Name, c.TransportSocket.Name)
			c.TransportSocket = nil
		}
		var filters []*cluster.Filter
		for _, f := range c.Filters {
			if why := istioOnly(f.Name, f.GetTypedConfig(), false); why != "" {
				r.drop("cluster %s: upstream filter %s: %s", c.Name, f.Name, why)
				continue
			}
			filters = append(filters, f)
		}
		c.Filters = filters
	}
	for _, name := range sortedKeys(mapKeys(r.Endpoints)) {
		if !known[name] {
			r.Warnings = append(r.Warnings, fmt.Sprintf("--endpoints: no cluster named %s", name))
		}
	}
	return cs, nil
}

func mapKeys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func loadAssignment(name string, addrs []SocketAddr) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	if len(addrs) == 0 {
		return cla
	}
	loc := &endpoint.LocalityLbEndpoints{
		// Istio may enable locality-weighted LB on a cluster; a locality without a weight
		// then gets no traffic, so give ours one. Without that LB mode it is ignored.
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
	for _, a := range addrs {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
					Address:       a.IP,
					PortSpecifier: &core.SocketAddress_PortValue{PortValue: a.Port},
				}}},
			}},
		})
	}
	cla.Endpoints = []*endpoint.LocalityLbEndpoints{loc}
	return cla
}

// needsSDS reports whether a transport socket fetches secrets over SDS (Istio's workload
// certificates via the agent's sds-grpc, or a gateway credential over ADS): a standalone
// Envoy has neither. Searching the JSON form covers every place a TLS context can name one.
func needsSDS(ts *core.TransportSocket) bool {
	if ts == nil {
		return false
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ts)
	if err != nil {
		return true // cannot inspect it: an opaque socket is no use to plain-HTTP backends either
	}
	return strings.Contains(string(js), `"sds_config"`)
}

// RewriteRoutes removes per-filter route config for the filters removed from listeners:
// Envoy rejects per-route config for a filter type it does not know.
func (r *Rewriter) RewriteRoutes(rcs []*route.RouteConfiguration) {
	for _, rc := range rcs {
		r.stripPerFilter(rc.Name, "route config", rc.TypedPerFilterConfig)
		for _, vh := range rc.VirtualHosts {
			r.stripPerFilter(rc.Name, "virtual host "+vh.Name, vh.TypedPerFilterConfig)
			for _, rt := range vh.Routes {
				r.stripPerFilter(rc.Name, "route "+rt.Name, rt.TypedPerFilterConfig)
			}
		}
	}
}

func (r *Rewriter) stripPerFilter(rcName, where string, m map[string]*anypb.Any) {
	for _, name := range sortedKeys(mapKeys(m)) {
		if why := istioOnly(name, m[name], false); why != "" {
			r.drop("route %s: %s: typed_per_filter_config %s: %s", rcName, where, name, why)
			delete(m, name)
		}
	}
}
