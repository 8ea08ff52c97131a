package oracle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validTrafficExtension is what sticky-canary would write for the AKS gateway.
const validTrafficExtension = `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: {name: sticky-canary-my-app, namespace: aks-istio-ingress}
spec:
  selector:
    matchLabels: {istio: aks-istio-ingressgateway-external}
  phase: AUTHN
  priority: 10
  match: [{mode: CLIENT, ports: [{number: 80}]}]
  wasm:
    url: oci://myregistry.azurecr.io/sticky-canary:0.1.0
    sha256: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
    imagePullPolicy: IfNotPresent
    failStrategy: FAIL_OPEN
    pluginName: sticky-canary
    pluginConfig: {header: x-canary-version, routes: [{name: v2, weight: 10}]}
    vmConfig:
      env: [{name: MODE, value: strict}]
`

// validWasmPlugin is the WasmPlugin form of the same plugin.
const validWasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: sticky-canary-my-app, namespace: aks-istio-ingress}
spec:
  selector:
    matchLabels: {istio: aks-istio-ingressgateway-external}
  url: oci://myregistry.azurecr.io/sticky-canary:0.1.0
  sha256: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
  phase: AUTHN
  failStrategy: FAIL_CLOSE
  pluginConfig: {header: x-canary-version}
`

// teWith is a TrafficExtension with the given spec lines.
func teWith(name, spec string) string {
	return fmt.Sprintf("apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: %s, namespace: ns}\nspec:\n%s", name, spec)
}

func runCRDCheck(t *testing.T, docs ...string) *CRDCheckResult {
	t.Helper()
	in := writeFile(t, "objects.yaml", []byte(strings.Join(docs, "\n---\n")))
	res, err := CRDCheck([]string{in})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCRDCheck(t *testing.T) {
	const wasm = "  wasm: {url: 'oci://example.com/p:1'}\n"
	cases := []struct {
		name string
		doc  string
		// want: one problem line per entry, holding its substrings in that order.
		want [][]string
	}{
		{"valid TrafficExtension", validTrafficExtension, nil},
		{"valid WasmPlugin", validWasmPlugin, nil},
		{"valid TrafficExtension with lua and targetRefs", teWith("lua", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  lua: {inlineCode: 'function envoy_on_request(h) end'}\n"), nil},
		{"wasm and lua", teWith("both", wasm+"  lua: {inlineCode: 'function envoy_on_request(h) end'}\n"), [][]string{
			// the schema's oneOf, then the CEL rule has(self.wasm) != has(self.lua)
			{"TrafficExtension/ns/both", `"spec" must validate one and only one schema (oneOf)`},
			{"TrafficExtension/ns/both", "spec: Invalid value", "exactly one of wasm or lua must be set"},
		}},
		{"neither wasm nor lua", teWith("neither", "  phase: AUTHN\n"), [][]string{
			{"TrafficExtension/ns/neither", "spec: Invalid value", "exactly one of wasm or lua must be set"},
		}},
		{"selector and targetRefs", teWith("selref", "  selector: {matchLabels: {app: a}}\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n"+wasm), [][]string{
			{"TrafficExtension/ns/selref", "spec: Invalid value", "only one of targetRefs or selector can be set"},
		}},
		{"unknown field", teWith("unknown", "  wasm: {url: 'oci://example.com/p:1', failstrategy: FAIL_OPEN}\n"), [][]string{
			{"TrafficExtension/ns/unknown", `spec.wasm.failstrategy: unknown field "spec.wasm.failstrategy"`},
		}},
		{"wasm.url scheme", teWith("scheme", "  wasm: {url: 'ftp://example.com/p.wasm'}\n"), [][]string{
			{"TrafficExtension/ns/scheme", `spec.wasm.url: Invalid value: "ftp://example.com/p.wasm"`, "url must have schema one of [http, https, file, oci]"},
		}},
		{"enum", teWith("enum", "  phase: AUTHZN\n"+wasm), [][]string{
			{"TrafficExtension/ns/enum", `spec.phase: Unsupported value: "AUTHZN"`, `"AUTHN"`},
			// an enum error keeps the CEL rules from running, and the API server says so
			{"TrafficExtension/ns/enum", "some validation rules were not checked"},
		}},
		{"type", teWith("type", "  priority: high\n"+wasm), [][]string{
			{"TrafficExtension/ns/type", `spec.priority: Invalid value: "string"`, "must be of type integer"},
			{"TrafficExtension/ns/type", "some validation rules were not checked"},
		}},
		{"required and minimum", teWith("required", "  match: [{ports: [{number: 0}]}]\n  wasm: {sha256: 'abc'}\n"), [][]string{
			{"TrafficExtension/ns/required", "spec.match[0].ports[0].number: Invalid value: 0", "should be greater than or equal to 1"},
			{"TrafficExtension/ns/required", `spec.wasm.sha256: Invalid value: "abc"`, "should match"},
			{"TrafficExtension/ns/required", "spec.wasm.url: Required value"},
			{"TrafficExtension/ns/required", "some validation rules were not checked"},
		}},
		{"list-type map keys", teWith("dupports", "  match: [{ports: [{number: 80}, {number: 80}]}]\n"+wasm), [][]string{
			{"TrafficExtension/ns/dupports", "spec.match[0].ports[1]: Duplicate value"},
		}},
		{"metadata name", strings.Replace(validTrafficExtension, "name: sticky-canary-my-app", "name: Sticky_Canary", 1), [][]string{
			{"TrafficExtension/aks-istio-ingress/Sticky_Canary", `metadata.name: Invalid value: "Sticky_Canary"`, "RFC 1123"},
		}},
		{"version not served", strings.Replace(validWasmPlugin, "extensions.istio.io/v1alpha1", "extensions.istio.io/v1", 1), [][]string{
			{"WasmPlugin/aks-istio-ingress/sticky-canary-my-app", "apiVersion: extensions.istio.io/v1 is not a served version of CRD wasmplugins.extensions.istio.io (served: v1alpha1)"},
		}},
		{"Istio group, no such kind", "apiVersion: extensions.istio.io/v1alpha1\nkind: LuaPlugin\nmetadata: {name: l, namespace: ns}\n", [][]string{
			{"LuaPlugin/ns/l", "kind: no CRD for LuaPlugin in group extensions.istio.io", "crd-all.gen.yaml"},
		}},
		{"duplicate key", teWith("dup", wasm+"  phase: AUTHN\n  phase: AUTHZ\n"), [][]string{
			{"TrafficExtension/ns/dup", "a key is given twice", `key "phase" already set`},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runCRDCheck(t, c.doc)
			wantOK := 0
			if c.want == nil {
				wantOK = 1
			}
			if res.Checked != 1 || len(res.Skipped) != 0 || len(res.OK) != wantOK {
				t.Errorf("checked %d, ok %v, skipped %v", res.Checked, res.OK, res.Skipped)
			}
			if len(res.Problems) != len(c.want) {
				t.Fatalf("problems:\n%s\nwant %d", strings.Join(res.Problems, "\n"), len(c.want))
			}
			used := make([]bool, len(res.Problems))
			for _, want := range c.want {
				found := false
				for i, line := range res.Problems {
					if !used[i] && containsInOrder(line, append([]string{"objects.yaml: document 1: "}, want...)) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("no problem has %q in that order:\n%s", want, strings.Join(res.Problems, "\n"))
				}
			}
		})
	}
}

// containsInOrder: s holds each of parts, one after the other.
func containsInOrder(s string, parts []string) bool {
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

func TestCRDCheckSkipsNonIstioKinds(t *testing.T) {
	res := runCRDCheck(t,
		"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{port: 80}]}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec: {bogus: 1}\n",
		"# a sticky-canary config, not an object\napp: my-app\n",
		validTrafficExtension,
	)
	if res.Checked != 1 || len(res.Problems) != 0 || len(res.OK) != 1 || !strings.HasSuffix(res.OK[0], "document 4: TrafficExtension/aks-istio-ingress/sticky-canary-my-app (extensions.istio.io/v1alpha1)") {
		t.Errorf("checked %d, ok %v, problems %v", res.Checked, res.OK, res.Problems)
	}
	if len(res.Lines) != 4 || !strings.HasPrefix(res.Lines[0], "skipped: ") || !strings.HasPrefix(res.Lines[3], "ok: ") {
		t.Errorf("lines not in input order: %v", res.Lines)
	}
	want := []string{"document 1: Service/ns/s (v1): not an Istio kind", "document 2: HTTPRoute/ns/r (gateway.networking.k8s.io/v1): not an Istio kind", "document 3: (no kind)/(no name): not a Kubernetes object"}
	if len(res.Skipped) != len(want) {
		t.Fatalf("skipped %v", res.Skipped)
	}
	for i, w := range want {
		if !strings.Contains(res.Skipped[i], w) {
			t.Errorf("skipped[%d] = %q, want %q", i, res.Skipped[i], w)
		}
	}
}

// A v1 List's items are checked one by one, as kubectl sends them.
func TestCRDCheckListItems(t *testing.T) {
	res := runCRDCheck(t, `apiVersion: v1
kind: List
items:
- apiVersion: extensions.istio.io/v1alpha1
  kind: TrafficExtension
  metadata: {name: ok, namespace: ns}
  spec: {wasm: {url: 'oci://example.com/p:1'}}
- apiVersion: extensions.istio.io/v1alpha1
  kind: TrafficExtension
  metadata: {name: neither, namespace: ns}
  spec: {}
`)
	if res.Checked != 2 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "document 1: item 1: TrafficExtension/ns/neither: spec: Invalid value") {
		t.Errorf("checked %d, problems %v", res.Checked, res.Problems)
	}
}

// The CRDs are the ones embedded in the Istio this binary was built from.
func TestCRDCheckUsesThisBuildsCRDs(t *testing.T) {
	set, err := istioCRDSet()
	if err != nil {
		t.Fatal(err)
	}
	module, err := IstioModule()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(set.source, module+" ") || !strings.HasSuffix(set.source, "crd-all.gen.yaml") {
		t.Errorf("CRD source %q, want %s's crd-all.gen.yaml", set.source, module)
	}
	for _, kind := range []string{"TrafficExtension", "WasmPlugin", "EnvoyFilter", "VirtualService", "Gateway", "DestinationRule", "Sidecar", "AuthorizationPolicy", "Telemetry"} {
		found := false
		for gk, crd := range set.byGK {
			if gk.Kind == kind {
				found = true
				if errs := set.validateCRD(crd); len(errs) > 0 {
					t.Errorf("CRD %s would not install: %v", crd.Name, errs.ToAggregate())
				}
			}
		}
		if !found {
			t.Errorf("no CRD of kind %s", kind)
		}
	}
}

func TestCRDCheckBadInput(t *testing.T) {
	for _, c := range []struct{ name, yaml string }{
		{"unparsable yaml", "kind: [unclosed\n"},
		{"not a mapping", "- a\n- b\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := writeFile(t, "bad.yaml", []byte(c.yaml))
			_, err := CRDCheck([]string{in})
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "bad.yaml: document 1") {
				t.Errorf("err = %v, want an InputError naming bad.yaml, document 1", err)
			}
		})
	}
	_, err := CRDCheck([]string{filepath.Join(t.TempDir(), "missing.yaml")})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("err = %v, want an InputError naming missing.yaml", err)
	}
}

// budgetRules are CEL rules of the test CRD, each quadratic in a group's values: the cost of
// one evaluation grows as the square of the number of values, and the API server's estimate
// of it (for maxValues values) is close to the actual cost.
var budgetRules = []string{
	"self.values.all(x, self.values.all(y, x >= 0))",
	"self.values.all(x, self.values.all(y, x < 1000000))",
	"self.values.all(x, self.values.all(y, x != -1))",
	"self.values.all(x, self.values.all(y, x <= 999999))",
}

// budgetCRD is a test CRD (group test.istio.io, so crd-check checks its kind) with the
// budgetRules on each of at most maxGroups elements of spec.groups, which have at most
// maxValues integer values each.
func budgetCRD(maxGroups, maxValues int) string {
	var rules strings.Builder
	for i, r := range budgetRules {
		fmt.Fprintf(&rules, "                  - {rule: %q, message: rule %d}\n", r, i)
	}
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: budgets.test.istio.io}
spec:
  group: test.istio.io
  names: {kind: Budget, listKind: BudgetList, plural: budgets, singular: budget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              groups:
                type: array
                maxItems: %d
                items:
                  type: object
                  x-kubernetes-validations:
%s                  properties:
                    values:
                      type: array
                      maxItems: %d
                      items: {type: integer}
`, maxGroups, rules.String(), maxValues)
}

// budgetObject has groups groups of the values 0..values-1 (first the given one instead of 0).
func budgetObject(groups, values, first int) string {
	var b strings.Builder
	b.WriteString("apiVersion: test.istio.io/v1\nkind: Budget\nmetadata: {name: b, namespace: ns}\nspec:\n  groups:\n")
	for g := 0; g < groups; g++ {
		b.WriteString("  - values: [")
		for v := 0; v < values; v++ {
			if v > 0 {
				b.WriteString(", ")
			}
			if v == 0 {
				fmt.Fprintf(&b, "%d", first)
			} else {
				fmt.Fprintf(&b, "%d", v)
			}
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// TestCRDCheckCELCostBudget: the CEL rules run as in the API server, within its cost limits:
// each evaluation under the per-call limit (celconfig.PerCallLimit), all evaluations for one
// object under one per-request budget (celconfig.RuntimeCELCostBudget, 10x the per-call
// limit); and a CRD whose estimated rule cost is over the per-rule limit does not install.
// Each estimate here is within the install-time limits, so only the runtime ones bite.
func TestCRDCheckCELCostBudget(t *testing.T) {
	check := func(t *testing.T, crd, object string) string {
		t.Helper()
		set, err := loadCRDs([]byte(crd), "test CRD")
		if err != nil {
			t.Fatal(err)
		}
		res, err := set.checkPaths([]string{writeFile(t, "budget.yaml", []byte(object))})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(res.Problems, "\n")
	}
	// 8 groups of up to 300 values: 4 rules x 8 evaluations of about 4e5 each.
	crd := budgetCRD(8, 300)
	cases := []struct{ name, crd, object, want string }{
		{"within budget", crd, budgetObject(2, 300, 0), ""},
		{"a rule still fails", crd, budgetObject(2, 300, -1), "spec.groups[0]: Invalid value: rule 0"},
		{"per-request budget exhausted", crd, budgetObject(8, 300, 0), "validation failed due to running out of cost budget, no further validation rules will be run"},
		{"per-call limit", budgetCRD(1, 1000), budgetObject(1, 1000, 0), "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: rule 0"},
		{"CRD over the estimated cost limit", budgetCRD(1, 1500), budgetObject(1, 3, 0), "CRD budgets.test.istio.io from test CRD would not install: " +
			"spec.validation.openAPIV3Schema.properties[spec].properties[groups].items.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := check(t, c.crd, c.object)
			if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Errorf("problems:\n%s\nwant one with %q", got, c.want)
			}
		})
	}
}

func TestCRDCheckRepoManifests(t *testing.T) {
	// The repository's own manifests (what sticky-canary ships) pass.
	dir := filepath.Join("..", "..", "..", "..", "manifests")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no %s: %v", dir, err)
	}
	res, err := CRDCheck([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || res.Checked == 0 {
		t.Errorf("checked %d, problems:\n%s", res.Checked, strings.Join(res.Problems, "\n"))
	}
}
