package oracle

import (
	"fmt"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	networkrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	networkwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"
)

// AgentOptions mirror istio-agent's WASM_* settings (pilot/cmd/pilot-agent/options).
type AgentOptions struct {
	CacheDir string
	// InsecureRegistries are host[:port] values (or "*") for which the agent allows plain
	// http OCI registries and skips TLS verification (both for oci:// and https:// urls).
	InsecureRegistries []string
	// FetchTimeout is WASM_HTTP_REQUEST_TIMEOUT: the timeout of each http(s) request.
	FetchTimeout time.Duration
	// FetchAttempts is WASM_HTTP_REQUEST_MAX_RETRIES: attempts for http(s) urls.
	FetchAttempts int
}

// Outcome values in summary.json.
const (
	OutcomeWasm      = "wasm"       // module fetched and verified; config points at the local file
	OutcomeRBACAllow = "rbac-allow" // fetch/verify failed, fail-open: agent put in an allow-all RBAC filter
	OutcomeRBACDeny  = "rbac-deny"  // fetch/verify failed, fail-closed: agent put in a deny-all RBAC filter
	OutcomeUnchanged = "unchanged"  // not a remote wasm module: the agent passed it through
)

// ExtensionOutcome is one summary.json extension_configs entry.
type ExtensionOutcome struct {
	Name      string `json:"name"`
	Outcome   string `json:"outcome"`
	Error     string `json:"error,omitempty"`
	LocalFile string `json:"local_file,omitempty"`
	// File is the ECDS file under --out that holds this resource.
	File string `json:"file,omitempty"`
}

// recordingCache wraps the agent's cache to learn why a fetch failed: the agent itself only
// logs the error before substituting the RBAC filter.
type recordingCache struct {
	wasm.Cache
	mu   sync.Mutex
	errs map[string]error
}

func (c *recordingCache) Get(url string, opts wasm.GetOptions) (string, error) {
	path, err := c.Cache.Get(url, opts)
	if err != nil {
		c.mu.Lock()
		c.errs[opts.ResourceName] = fmt.Errorf("cannot fetch Wasm module %v: %w", url, err)
		c.mu.Unlock()
	}
	return path, err
}

// ConvertExtensionConfigs runs istio-agent's own ECDS rewrite
// (wasm.MaybeConvertWasmExtensionConfig) over the resources, in place, and reports what
// happened to each one.
func ConvertExtensionConfigs(resources []*anypb.Any, opts AgentOptions) ([]ExtensionOutcome, error) {
	attempts := opts.FetchAttempts
	if attempts <= 0 {
		// The agent's fetcher makes zero attempts when told zero: never pass that through.
		attempts = 1
	}
	cache := &recordingCache{
		Cache: wasm.NewLocalFileCache(opts.CacheDir, wasm.Options{
			InsecureRegistries:    sets.New(opts.InsecureRegistries...),
			HTTPRequestTimeout:    opts.FetchTimeout,
			HTTPRequestMaxRetries: attempts,
		}),
		errs: map[string]error{},
	}
	defer cache.Cleanup()

	before := make([]*anypb.Any, len(resources))
	for i, r := range resources {
		before[i] = proto.Clone(r).(*anypb.Any)
	}
	if err := wasm.MaybeConvertWasmExtensionConfig(resources, cache); err != nil {
		return nil, fmt.Errorf("istio-agent wasm conversion: %v", err)
	}

	out := make([]ExtensionOutcome, 0, len(resources))
	for i, r := range resources {
		ec := &core.TypedExtensionConfig{}
		if err := r.UnmarshalTo(ec); err != nil {
			return nil, err
		}
		o := ExtensionOutcome{Name: ec.Name}
		outcome, local, err := classify(ec)
		if err != nil {
			return nil, fmt.Errorf("extension config %s: %v", ec.Name, err)
		}
		switch {
		case proto.Equal(before[i], r):
			o.Outcome = OutcomeUnchanged
		default:
			o.Outcome = outcome
			o.LocalFile = local
		}
		if o.Outcome == OutcomeRBACAllow || o.Outcome == OutcomeRBACDeny {
			if err := cache.errs[ec.Name]; err != nil {
				o.Error = err.Error()
			} else {
				o.Error = "istio-agent could not convert the module (no fetch attempted; see its log on stderr)"
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// classify tells a converted resource apart: a wasm filter reading a local file, or one of
// the agent's fallback RBAC filters (told apart by their stat prefixes).
func classify(ec *core.TypedExtensionConfig) (outcome, localFile string, err error) {
	tc := ec.GetTypedConfig()
	if tc == nil {
		return OutcomeUnchanged, "", nil
	}
	switch {
	case tc.MessageIs(&httpwasm.Wasm{}):
		w := &httpwasm.Wasm{}
		if err := tc.UnmarshalTo(w); err != nil {
			return "", "", err
		}
		return OutcomeWasm, w.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename(), nil
	case tc.MessageIs(&networkwasm.Wasm{}):
		w := &networkwasm.Wasm{}
		if err := tc.UnmarshalTo(w); err != nil {
			return "", "", err
		}
		return OutcomeWasm, w.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename(), nil
	case tc.MessageIs(&httprbac.RBAC{}):
		r := &httprbac.RBAC{}
		if err := tc.UnmarshalTo(r); err != nil {
			return "", "", err
		}
		return rbacOutcome(r.RulesStatPrefix), "", nil
	case tc.MessageIs(&networkrbac.RBAC{}):
		r := &networkrbac.RBAC{}
		if err := tc.UnmarshalTo(r); err != nil {
			return "", "", err
		}
		return rbacOutcome(r.StatPrefix), "", nil
	}
	return OutcomeUnchanged, "", nil
}

func rbacOutcome(statPrefix string) string {
	switch statPrefix {
	case wasm.DefaultAllowStatPrefix:
		return OutcomeRBACAllow
	case wasm.DefaultDenyStatPrefix:
		return OutcomeRBACDeny
	}
	return OutcomeUnchanged
}
