package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sticky-canary/tools/istio-xds/internal/oracle"
)

func TestMain(m *testing.M) {
	oracle.QuietIstioLogs()
	os.Exit(m.Run())
}

// captureStdout runs f and returns what it printed.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	f()
	os.Stdout = old
	w.Close()
	return <-done
}

func TestVersionPrintsIstioModule(t *testing.T) {
	want, err := oracle.IstioModule()
	if err != nil {
		t.Fatal(err)
	}
	var code int
	out := captureStdout(t, func() { code = version(nil) })
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK {
		t.Fatalf("version: exit %d, output %q (%v)", code, out, err)
	}
	if len(got) != 1 || got["istio_module"] != want {
		t.Errorf("version printed %v, want exactly {\"istio_module\": %q}", got, want)
	}
	if !strings.HasPrefix(want, "istio.io/istio v") {
		t.Errorf("istio module %q", want)
	}
	if code := version([]string{"extra"}); code != exitBadInput {
		t.Errorf("version extra: exit %d, want %d", code, exitBadInput)
	}
}

func TestTranslateNeedsIstioVersion(t *testing.T) {
	in := filepath.Join(t.TempDir(), "ns.yaml")
	if err := os.WriteFile(in, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--in", in, "--out", t.TempDir()},
		{"--istio-version", "1.30", "--in", in, "--out", t.TempDir()},
	} {
		if code := translate(args); code != exitBadInput {
			t.Errorf("translate %v: exit %d, want %d", args, code, exitBadInput)
		}
	}
	out := t.TempDir()
	if code := translate([]string{"--istio-version", "1.30.3", "--in", in, "--out", out}); code != exitOK {
		t.Fatalf("translate with --istio-version: exit %d", code)
	}
	data, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum map[string]any
	if err := json.Unmarshal(data, &sum); err != nil || sum["istio_version"] != "1.30.3" {
		t.Errorf("summary.json istio_version %v (%v)", sum["istio_version"], err)
	}
}

func TestCRDCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"+
		"apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: te, namespace: ns}\nspec: {wasm: {url: 'oci://example.com/p:1'}}\n")
	bad := write("bad.yaml", "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: te, namespace: ns}\nspec: {wasm: {url: 'oci://example.com/p:1'}, lua: {inlineCode: x}}\n")
	broken := write("broken.yaml", "kind: [unclosed\n")

	var code int
	out := captureStdout(t, func() { code = crdCheck([]string{good}) })
	if code != exitOK || out != "skipped: "+good+": document 1: Namespace/a (v1): not an Istio kind\n"+
		"ok: "+good+": document 2: TrafficExtension/ns/te (extensions.istio.io/v1alpha1)\n" {
		t.Errorf("good: exit %d, output %q", code, out)
	}
	out = captureStdout(t, func() { code = crdCheck([]string{bad}) })
	if code != exitAnalyzeError || !strings.Contains(out, bad+": document 1: TrafficExtension/ns/te: spec: Invalid value: exactly one of wasm or lua must be set\n") || strings.Contains(out, "ok: ") {
		t.Errorf("bad: exit %d, output %q", code, out)
	}
	for _, args := range [][]string{{broken}, {filepath.Join(dir, "missing.yaml")}, {}} {
		if code := crdCheck(args); code != exitBadInput {
			t.Errorf("crd-check %v: exit %d, want %d", args, code, exitBadInput)
		}
	}
}
