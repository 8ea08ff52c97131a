// Command progressive runs Flagger's and Argo Rollouts' own Istio routing code in-process
// (their fake Kubernetes clients, as their unit tests do) and writes the objects each tool
// would apply at every step of a canary run, so tests can translate them with Istio's own
// code and route real traffic through them. See README.md.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  progressive flagger --in FILE --out DIR --steps STEPS
  progressive argo    --in FILE --out DIR --steps STEPS

FILE is a multi-document YAML holding the tool's resource (a Flagger Canary, or an Argo
Rollout) and, for argo, the VirtualService it manages. STEPS is a comma-separated plan:
a canary weight (0-100), "promote" or "rollback". DIR gets one file per step,
NN-STEP.yaml, with every object the tool's router owns after that step, and steps.json.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "flagger":
		err = runTool(os.Args[2:], newFlagger)
	case "argo":
		err = runTool(os.Args[2:], newArgo)
	default:
		fmt.Fprintf(os.Stderr, "progressive: unknown tool %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "progressive %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
