package oracle

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"istio.io/istio/pilot/pkg/model"
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/test"
)

// istioVersionPattern is what --istio-version accepts: a release number X.Y.Z, as a released
// istio-proxy reports it in ISTIO_VERSION. istiod (model.ParseIstioVersion) reads anything it
// cannot parse as the newest possible version, which would silently turn on config meant
// for newer proxies, so the tool refuses anything else.
var istioVersionPattern = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// CheckIstioVersion checks an --istio-version value: required, and X.Y.Z.
func CheckIstioVersion(v string) error {
	if v == "" {
		return inputErrorf("--istio-version is required: the ISTIO_VERSION the proxy reports (X.Y.Z, e.g. 1.30.3); istiod gates generated config on it")
	}
	if !istioVersionPattern.MatchString(v) {
		return inputErrorf("--istio-version %q: want X.Y.Z (e.g. 1.30.3)", v)
	}
	return nil
}

// ProxyKind is the kind of Istio proxy whose config istiod generates.
type ProxyKind string

const (
	// ProxyGateway is an ingress gateway pod (istiod's "router" node type).
	ProxyGateway ProxyKind = "gateway"
	// ProxySidecar is an application pod's sidecar (istiod's "sidecar" node type).
	ProxySidecar ProxyKind = "sidecar"
)

// Proxy describes the pod the fake istiod serves: a gateway (the AKS add-on's ingress
// gateway by default) or an application pod's sidecar.
type Proxy struct {
	Kind      ProxyKind
	Namespace string
	Labels    map[string]string
	// IP is the pod IP the proxy reports (node id and INSTANCE_IPS); nothing connects to it.
	IP string
}

// The AKS add-on's external ingress gateway, the default proxy.
const (
	defaultGatewayNamespace = "aks-istio-ingress"
	defaultGatewayLabel     = "istio=aks-istio-ingressgateway-external"
	defaultGatewayIP        = "127.0.0.1"
	// defaultSidecarIP is a pod IP in AKS's default pod CIDR (10.244.0.0/16): istiod
	// treats a loopback pod IP as no IP at all for some lookups.
	defaultSidecarIP = "10.244.0.10"
)

// ParseProxy builds the proxy from the translate flags: --proxy (gateway or sidecar),
// --proxy-namespace, --proxy-label k=v (repeatable) and --proxy-ip. Empty values take the
// kind's defaults: the gateway is the AKS add-on's external ingress gateway; a sidecar has
// no default namespace (it decides which Sidecar, DestinationRule and exportTo apply), no
// labels and IP 10.244.0.10.
func ParseProxy(kind, namespace string, labels []string, ip string) (Proxy, error) {
	p := Proxy{Kind: ProxyKind(kind), Namespace: namespace, Labels: map[string]string{}, IP: ip}
	switch p.Kind {
	case "", ProxyGateway:
		p.Kind = ProxyGateway
		if p.Namespace == "" {
			p.Namespace = defaultGatewayNamespace
		}
		if len(labels) == 0 {
			labels = []string{defaultGatewayLabel}
		}
		if p.IP == "" {
			p.IP = defaultGatewayIP
		}
	case ProxySidecar:
		if p.Namespace == "" {
			return Proxy{}, inputErrorf("--proxy sidecar needs --proxy-namespace (the application pod's namespace)")
		}
		if p.IP == "" {
			p.IP = defaultSidecarIP
		}
	default:
		return Proxy{}, inputErrorf("--proxy %q: want gateway or sidecar", kind)
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return Proxy{}, inputErrorf("--proxy-label %q: want key=value", l)
		}
		p.Labels[k] = v
	}
	addr, err := netip.ParseAddr(p.IP)
	if err != nil {
		return Proxy{}, inputErrorf("--proxy-ip %q: want an IP address", p.IP)
	}
	p.IP = addr.String()
	return p, nil
}

// XDS is what istiod sent the gateway over ADS.
type XDS struct {
	Listeners []*listener.Listener
	Clusters  []*cluster.Cluster
	Routes    []*route.RouteConfiguration
	// ExtensionConfigs are ECDS resources (TypedExtensionConfig in Any), as the agent sees them.
	ExtensionConfigs []*anypb.Any
	// MissingExtensionConfigs are names a filter's config_discovery asks for that istiod
	// did not answer.
	MissingExtensionConfigs []string
}

// adsTimeout bounds each ADS exchange: istiod answers in-process in milliseconds, so a
// missing answer means it has nothing to send.
const adsTimeout = 10 * time.Second

// ecdsTimeout is shorter: istiod skips ECDS responses when it has no resource at all.
const ecdsTimeout = 3 * time.Second

// GenerateXDS runs istiod's translation in-process (pilot/test/xds fake discovery server)
// and asks it over a real ADS stream for everything the gateway pod would request:
// CDS and LDS (wildcard), RDS for the route names the listeners reference, and ECDS for
// the names the listeners' filters reference. The proxy reports istioVersion as its
// ISTIO_VERSION.
func GenerateXDS(in *Inputs, p Proxy, istioVersion string) (*XDS, error) {
	if err := CheckIstioVersion(istioVersion); err != nil {
		return nil, err
	}
	var out *XDS
	var genErr error
	err := runFailer(func(t test.Failer) {
		objects := in.KubeObjects
		if p.Kind == ProxyGateway {
			objects = append(append([]runtime.Object{}, objects...), gatewayPod(p))
		}
		s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
			Configs:           in.Configs,
			KubernetesObjects: objects,
		})
		out, genErr = fetchOverADS(s, p, istioVersion)
	})
	if err != nil {
		return nil, fmt.Errorf("istiod: %v", err)
	}
	return out, genErr
}

// gatewayPod is the gateway's own Pod as the API server holds it: the name istiod reads from
// the node id, the namespace, the labels and the pod IP. istiod looks the pod up to find the
// Services that select it (the proxy's service targets) before it reads the labels from the
// node metadata; a Gateway API Gateway applies only to the pods of its Service
// (NAME-istio), so without the Pod that Gateway has no listener. The add-on's gateway is
// matched by its `istio` label and does not need it.
func gatewayPod(p Proxy) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: gatewayWorkload, Namespace: p.Namespace, Labels: p.Labels},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}}},
	}
}

// gatewayWorkload is the gateway pod's name in the node id.
const gatewayWorkload = "istio-xds-gateway"

// proxyNode is the node a pod's istio-agent sends: id type~ip~pod.namespace~domain, and
// the metadata istiod reads the namespace, labels and version from (as pilot/test/xds's
// SetupProxy fills model.Proxy: Type, IPAddresses, Metadata.Namespace and Labels).
func proxyNode(p Proxy, istioVersion string) *core.Node {
	nodeType, workload := model.Router, gatewayWorkload
	if p.Kind == ProxySidecar {
		nodeType, workload = model.SidecarProxy, "istio-xds-sidecar"
		if app := p.Labels["app"]; app != "" {
			workload = app
		}
	}
	id := fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", nodeType, p.IP, workload, p.Namespace, p.Namespace)
	md := model.NodeMetadata{
		Namespace:    p.Namespace,
		Labels:       p.Labels,
		IstioVersion: istioVersion,
		ClusterID:    constants.DefaultClusterName,
		WorkloadName: workload,
	}
	if p.Kind == ProxySidecar {
		md.InstanceIPs = []string{p.IP}
	}
	return &core.Node{Id: id, Metadata: md.ToStruct()}
}

type adsResult struct {
	resp *discovery.DiscoveryResponse
	err  error
}

type adsClient struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	recv   chan adsResult
}

func newADSClient(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node *core.Node) *adsClient {
	c := &adsClient{stream: stream, node: node, recv: make(chan adsResult, 16)}
	// One reader for the whole stream, so a request that timed out cannot leave a
	// reader behind that steals the next response.
	go func() {
		for {
			resp, err := stream.Recv()
			c.recv <- adsResult{resp, err}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// get sends a request for typeURL and waits for the response of that type, then ACKs it.
// A timeout returns (nil, nil): istiod sends nothing when it has nothing for that type.
func (c *adsClient) get(typeURL string, names []string, timeout time.Duration) (*discovery.DiscoveryResponse, error) {
	req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNames: names}
	if err := c.stream.Send(req); err != nil {
		return nil, fmt.Errorf("ADS send %s: %v", typeURL, err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case r := <-c.recv:
			if r.err != nil {
				return nil, fmt.Errorf("ADS receive %s: %v", typeURL, r.err)
			}
			if r.resp.TypeUrl != typeURL {
				continue // a push for a type asked earlier; the first answer is what we keep
			}
			ack := &discovery.DiscoveryRequest{
				Node: c.node, TypeUrl: typeURL, ResourceNames: names,
				VersionInfo: r.resp.VersionInfo, ResponseNonce: r.resp.Nonce,
			}
			if err := c.stream.Send(ack); err != nil {
				return nil, fmt.Errorf("ADS ack %s: %v", typeURL, err)
			}
			return r.resp, nil
		case <-deadline:
			return nil, nil
		}
	}
}

func fetchOverADS(s *xds.FakeDiscoveryServer, p Proxy, istioVersion string) (*XDS, error) {
	conn, err := grpc.NewClient("passthrough:///istiod",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.BufListener.DialContext(ctx)
		}))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	c := newADSClient(stream, proxyNode(p, istioVersion))
	out := &XDS{}

	// Envoy's order: clusters first, then listeners, then what listeners reference.
	resp, err := c.get(v3.ClusterType, nil, adsTimeout)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, fmt.Errorf("istiod sent no CDS response")
	}
	for _, r := range resp.Resources {
		cl := &cluster.Cluster{}
		if err := r.UnmarshalTo(cl); err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, cl)
	}

	resp, err = c.get(v3.ListenerType, nil, adsTimeout)
	if err != nil {
		return nil, err
	}
	if resp != nil {
		for _, r := range resp.Resources {
			l := &listener.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return nil, err
			}
			out.Listeners = append(out.Listeners, l)
		}
	}

	routeNames, ecdsNames, err := listenerReferences(out.Listeners)
	if err != nil {
		return nil, err
	}
	if len(routeNames) > 0 {
		resp, err = c.get(v3.RouteType, routeNames, adsTimeout)
		if err != nil {
			return nil, err
		}
		if resp == nil {
			return nil, fmt.Errorf("istiod sent no RDS response for %v", routeNames)
		}
		for _, r := range resp.Resources {
			rc := &route.RouteConfiguration{}
			if err := r.UnmarshalTo(rc); err != nil {
				return nil, err
			}
			out.Routes = append(out.Routes, rc)
		}
	}

	if len(ecdsNames) > 0 {
		resp, err = c.get(v3.ExtensionConfigurationType, ecdsNames, ecdsTimeout)
		if err != nil {
			return nil, err
		}
		got := map[string]bool{}
		if resp != nil {
			for _, r := range resp.Resources {
				ec := &core.TypedExtensionConfig{}
				if err := r.UnmarshalTo(ec); err != nil {
					return nil, err
				}
				got[ec.Name] = true
				out.ExtensionConfigs = append(out.ExtensionConfigs, r)
			}
		}
		for _, n := range ecdsNames {
			if !got[n] {
				out.MissingExtensionConfigs = append(out.MissingExtensionConfigs, n)
			}
		}
	}
	return out, nil
}

// listenerReferences lists (sorted, unique) the RDS route names the listeners' HCMs use
// and the ECDS names their filters' config_discovery use.
func listenerReferences(ls []*listener.Listener) (routes, ecds []string, err error) {
	rs, es := map[string]bool{}, map[string]bool{}
	for _, l := range ls {
		for _, fc := range allFilterChains(l) {
			for _, f := range fc.Filters {
				if f.GetConfigDiscovery() != nil {
					es[f.Name] = true
				}
				h, ok, err := unmarshalHCM(f)
				if err != nil {
					return nil, nil, err
				}
				if !ok {
					continue
				}
				if rds := h.GetRds(); rds != nil {
					rs[rds.RouteConfigName] = true
				}
				for _, hf := range h.HttpFilters {
					if hf.GetConfigDiscovery() != nil {
						es[hf.Name] = true
					}
				}
			}
		}
	}
	return sortedKeys(rs), sortedKeys(es), nil
}

func allFilterChains(l *listener.Listener) []*listener.FilterChain {
	fcs := append([]*listener.FilterChain{}, l.FilterChains...)
	if l.DefaultFilterChain != nil {
		fcs = append(fcs, l.DefaultFilterChain)
	}
	return fcs
}

const hcmTypeURL = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

func unmarshalHCM(f *listener.Filter) (*hcm.HttpConnectionManager, bool, error) {
	tc := f.GetTypedConfig()
	if tc == nil || tc.TypeUrl != hcmTypeURL {
		return nil, false, nil
	}
	h := &hcm.HttpConnectionManager{}
	if err := tc.UnmarshalTo(h); err != nil {
		return nil, false, fmt.Errorf("filter %s: %v", f.Name, err)
	}
	return h, true, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
