package oracle

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BootstrapJSON is the bootstrap a standalone Envoy needs to run translate's output: LDS
// and CDS from OUT's files, watched through OUT itself so the rename translate does on
// every re-run is picked up live. README.md shows the same document.
func BootstrapJSON(out string) string {
	return fmt.Sprintf(`{
  "node": {"id": "istio-xds-test", "cluster": "istio-xds-test"},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
  "dynamic_resources": {
    "lds_config": {"path_config_source": {"path": "%[1]s/lds.json", "watched_directory": {"path": "%[1]s"}}},
    "cds_config": {"path_config_source": {"path": "%[1]s/cds.json", "watched_directory": {"path": "%[1]s"}}}
  }
}
`, out)
}

// lockedBuffer collects Envoy's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// envoyBinary finds upstream Envoy, $ENVOY or PATH, and fails the test when there is none
// (`make unit` sets ENVOY to the pinned release `sticky-canary install-envoy` prints).
func envoyBinary(t *testing.T) string {
	if e := os.Getenv("ENVOY"); e != "" {
		return e
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p
	}
	t.Fatal("no envoy binary: set ENVOY (`cargo run -- install-envoy` prints the pinned one) or put envoy on PATH")
	return ""
}

func freePort(t *testing.T) uint32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// backend answers with its version and whether the routing token reached it.
func backend(t *testing.T, version string) (*httptest.Server, SocketAddr) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s token=%q", version, r.Header.Get("x-canary-token"))
	}))
	t.Cleanup(srv.Close)
	sa, err := ParseSocketAddr(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return srv, sa
}

func get(addr string, headers map[string]string) (string, error) {
	return getHost(addr, "my-app.example.com", headers)
}

func getHost(addr, host string, headers map[string]string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// runEnvoy validates the bootstrap for translate's output in out and runs Envoy on it until
// the test ends; then its log is checked for rejected config, and printed if the test failed.
func runEnvoy(t *testing.T, envoy, out string) {
	t.Helper()
	bootstrap := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(bootstrap, []byte(BootstrapJSON(out)), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(envoy, "--mode", "validate", "-c", bootstrap).CombinedOutput(); err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := &lockedBuffer{}
	cmd := exec.CommandContext(ctx, envoy, "-c", bootstrap, "--use-dynamic-base-id", "-l", "info")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, bad := range []string{"rejected", "update failure"} {
			if strings.Contains(log.String(), bad) {
				t.Errorf("envoy log has %q", bad)
			}
		}
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("envoy log:\n%s", log.String())
		}
	})
}

func eventually(t *testing.T, what string, f func() (string, error), want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = f(); err == nil && strings.HasPrefix(got, want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: got %q (err %v), want prefix %q", what, got, err, want)
}

// TestEnvoyRunsTranslation runs upstream Envoy on translate's output: the route istiod
// generated picks the subset by header and strips the token, and a re-run of translate
// into the same directory is picked up live.
func TestEnvoyRunsTranslation(t *testing.T) {
	envoy := envoyBinary(t)
	_, v1 := backend(t, "v1")
	_, v2 := backend(t, "v2")
	// A module with the wrong sha256 and fail_open: the agent substitutes allow-all RBAC,
	// which upstream Envoy loads over ECDS from a file like the wasm filter would.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(minimalWasm) }))
	defer srv.Close()
	in := writeManifests(t, srv.URL+"/plugin.wasm", strings.Repeat("0", 64), "            fail_open: true")
	out := t.TempDir()
	port := freePort(t)
	opts := TranslateOptions{
		IstioVersion: testIstioVersion(t),
		Inputs:       []string{in},
		OutDir:       out,
		Proxy:        testGateway(),
		Listen:       map[uint32]SocketAddr{80: {"127.0.0.1", port}},
		Endpoints:    map[string][]SocketAddr{v1Cluster: {v1}, v2Cluster: {v2}},
	}
	sum, err := Translate(opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.ExtensionConfigs[0].Outcome != OutcomeRBACAllow {
		t.Fatalf("outcome %+v", sum.ExtensionConfigs[0])
	}
	runEnvoy(t, envoy, out)
	addr := SocketAddr{"127.0.0.1", port}.String()

	eventually(t, "default route", func() (string, error) { return get(addr, nil) }, "v1")
	eventually(t, "header-match route", func() (string, error) {
		return get(addr, map[string]string{"x-canary-version": "v2", "x-canary-token": "secret-token"})
	}, `v2 token=""`)
	eventually(t, "token without version", func() (string, error) {
		return get(addr, map[string]string{"x-canary-token": "secret-token"})
	}, `v1 token=""`)

	// Live update: the same --out, v1's cluster now points at the v2 backend.
	opts.Endpoints = map[string][]SocketAddr{v1Cluster: {v2}, v2Cluster: {v2}}
	if _, err := Translate(opts); err != nil {
		t.Fatal(err)
	}
	eventually(t, "default route after re-translate", func() (string, error) { return get(addr, nil) }, "v2")
}
