package oracle

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	QuietIstioLogs()
	os.Exit(m.Run())
}
