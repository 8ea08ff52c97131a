// Command kwok is KWOK's controller (sigs.k8s.io/kwok), built from the Go module proxy: the fake
// kubelet of the cluster suite. It marks the nodes it manages Ready, and the pods the scheduler
// binds to them Running and Ready with an address from --cidr, so Deployments get pods and
// EndpointSlices without a container runtime (tests/cluster.rs, docs/testing.md).
package main

import (
	"os"

	"github.com/spf13/pflag"

	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/cmd"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

func main() {
	flags := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flags.ParseErrorsWhitelist.UnknownFlags = true
	flags.Usage = func() {}
	ctx, logger := log.InitFlags(signals.SetupSignalContext(), flags)
	ctx, err := config.InitFlags(ctx, flags)
	if err != nil {
		logger.Error("kwok: config flags", err)
		os.Exit(1)
	}
	// One pod stage at a time. KWOK (v0.7.0, still in v0.8.0) creates a CIDR's address pool
	// lazily in PodController.ipPool, a Load then a Store on a sync map: with its default of
	// four parallel stage workers, the first two pods can each create a pool and both get the
	// CIDR's first address (CI saw shop-v1 and shop-v2 both at 10.244.1.0). One worker
	// serialises the allocation; the suite's few pods do not need more.
	config.GetKwokConfiguration(ctx).Options.PodPlayStageParallelism = 1
	command := cmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flags)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("kwok", err)
		os.Exit(1)
	}
}
