package oracle

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
)

// ServeFile serves one file at /<basename> on 127.0.0.1, over https with httptest's
// self-signed certificate when tls is set. It returns the file's URL and a stop function.
// The file is read on each request, so a test may replace it between fetches.
func ServeFile(path string, tls bool) (string, func(), error) {
	if _, err := os.Stat(path); err != nil {
		return "", nil, inputErrorf("--file: %v", err)
	}
	name := "/" + filepath.Base(path)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != name {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, path)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	return fmt.Sprintf("%s%s", srv.URL, name), srv.Close, nil
}
