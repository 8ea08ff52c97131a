package oracle

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// proxyVersions is the ISTIO_VERSION the tests' proxy reports for each Istio build this
// module has (go.mod, and go.asm-1-30.mod): the release line the pinned commit is on. A new
// pin needs its line here; the Rust harness keeps its own table and passes --istio-version.
var proxyVersions = map[string]string{
	// release-1.31 rc (AKS revision asm-1-31): go.mod
	"istio.io/istio v0.0.0-20260827124520-eed52ebb66ad": "1.31.0",
	// release-1.30 after 1.30.3 (AKS revision asm-1-30): go.asm-1-30.mod
	"istio.io/istio v0.0.0-20260826214018-9739e10eb9d7": "1.30.3",
}

// testIstioVersion is the --istio-version for the Istio this test binary was built from.
func testIstioVersion(t *testing.T) string {
	t.Helper()
	module, err := IstioModule()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := proxyVersions[module]
	if !ok {
		t.Fatalf("this build holds %s, which proxyVersions (version_test.go) does not list", module)
	}
	return v
}

func TestIstioModuleIsExact(t *testing.T) {
	module, err := IstioModule()
	if err != nil {
		t.Fatal(err)
	}
	// The Rust harness compares this string with its revision table: a module path, one
	// space, the version go.mod (or the modfile) requires, and no replacement.
	if !regexp.MustCompile(`^istio\.io/istio v0\.0\.0-[0-9]{14}-[0-9a-f]{12}$`).MatchString(module) {
		t.Errorf("IstioModule() = %q, want istio.io/istio v0.0.0-DATE-COMMIT", module)
	}
	testIstioVersion(t)
}

func TestCheckIstioVersion(t *testing.T) {
	for _, ok := range []string{"1.30.3", "1.31.0", "1.0.10"} {
		if err := CheckIstioVersion(ok); err != nil {
			t.Errorf("CheckIstioVersion(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1.30", "v1.30.3", "1.30.3-rc.0", "1.30.x", "01.30.3", " 1.30.3"} {
		err := CheckIstioVersion(bad)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "--istio-version") {
			t.Errorf("CheckIstioVersion(%q) = %v, want an InputError naming --istio-version", bad, err)
		}
	}
}

func TestProxyNodeReportsIstioVersion(t *testing.T) {
	n := proxyNode(testGateway(), "1.29.7")
	if got := n.GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue(); got != "1.29.7" {
		t.Errorf("node metadata ISTIO_VERSION = %q, want 1.29.7", got)
	}
}

// summary.json reports what --istio-version said and the exact Istio module; translate
// refuses to run without a version rather than picking one.
func TestTranslateIstioVersion(t *testing.T) {
	in := writeFile(t, "ns.yaml", []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"))
	module, err := IstioModule()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Translate(TranslateOptions{IstioVersion: "1.29.7", Inputs: []string{in}, OutDir: out, Proxy: testGateway()}); err != nil {
		t.Fatal(err)
	}
	sum := readJSON(t, filepath.Join(out, "summary.json"))
	if sum["istio_version"] != "1.29.7" || sum["istio_module"] != module {
		t.Errorf("summary.json istio_version %v istio_module %v, want 1.29.7 and %s", sum["istio_version"], sum["istio_module"], module)
	}

	for _, v := range []string{"", "1.31"} {
		_, err := Translate(TranslateOptions{IstioVersion: v, Inputs: []string{in}, OutDir: t.TempDir(), Proxy: testGateway()})
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "--istio-version") {
			t.Errorf("--istio-version %q: err = %v, want an InputError naming the flag", v, err)
		}
	}
}

func TestModuleVersionFromSourcePath(t *testing.T) {
	const v = "v0.0.0-20260827124520-eed52ebb66ad"
	for _, file := range []string{
		"/root/go/pkg/mod/istio.io/istio@" + v + "/pilot/test/xds/fake.go",
		"istio.io/istio@" + v + "/pilot/test/xds/fake.go",
	} {
		got, err := moduleVersionFromSourcePath(file, "istio.io/istio")
		if err != nil || got != v {
			t.Errorf("%s: %q, %v; want %s", file, got, err, v)
		}
	}
	for _, file := range []string{
		"/work/istio/pilot/test/xds/fake.go",               // a replace with a local directory
		"vendor/istio.io/istio/pilot/test/xds/fake.go",     // vendored
		"/x/notistio.io/istio@" + v + "/pilot/xds/fake.go", // another module whose path ends the same
		"istio.io/istio@" + v,                              // no directory after the version
	} {
		if got, err := moduleVersionFromSourcePath(file, "istio.io/istio"); err == nil {
			t.Errorf("%s: got %q, want an error", file, got)
		}
	}
}
