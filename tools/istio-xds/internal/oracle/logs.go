package oracle

import "istio.io/istio/pkg/log"

// QuietIstioLogs sends Istio's logs to stderr (stdout carries our output) and keeps only
// errors: the fake istiod is chatty at info level. The agent's fetch errors stay visible.
func QuietIstioLogs() {
	o := log.DefaultOptions()
	o.OutputPaths = []string{"stderr"}
	o.ErrorOutputPaths = []string{"stderr"}
	o.SetDefaultOutputLevel(log.OverrideScopeName, log.ErrorLevel)
	_ = log.Configure(o)
}
