package oracle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalJSON renders a message as stable, indented JSON. protojson deliberately varies
// its whitespace between runs; re-indenting removes that, so equal content gives equal
// bytes (map keys, including Struct fields, are already sorted by protojson).
func marshalJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// discoveryFile renders the DiscoveryResponse that Envoy's path_config_source reads. The
// version_info is a hash of the resources, so it changes exactly when the content does.
func discoveryFile(msgs []proto.Message) ([]byte, error) {
	resp := &discovery.DiscoveryResponse{}
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		resp.Resources = append(resp.Resources, a)
	}
	body, err := marshalJSON(resp)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	resp.VersionInfo = hex.EncodeToString(sum[:8])
	return marshalJSON(resp)
}

// writeAtomic replaces path with data by writing a temp file in the same directory and
// renaming it over path: Envoy, watching the directory, sees one move of a complete file.
// An unchanged file is left alone (byte-identical, no reload).
func writeAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The leading dot keeps temp files out of the *.json names we own (see FileName).
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeStale deletes *.json files in dir that this run did not write (resources that
// no longer exist), after the listeners stopped referencing them.
func removeStale(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || keep[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove stale %s: %v", e.Name(), err)
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'))
}
