// Command cluster is a local control plane in one binary: the processes of an AKS cluster
// that decide what our rendered objects do, built from the Go module proxy and run by the
// harness on loopback inside a network namespace of the test's own (tests/cluster.rs):
//
//	cluster etcd ...             etcd's own main (go.etcd.io/etcd/server/v3/etcdmain)
//	cluster kube-apiserver ...   Kubernetes' kube-apiserver command (k8s.io/kubernetes)
//	cluster kube-controller-manager ...  its controllers (Deployments, ReplicaSets, EndpointSlices)
//	cluster kube-scheduler ...   the scheduler, binding pods to the fake nodes KWOK runs
//	cluster kubectl ...          kubectl of the same Kubernetes build
//	cluster pilot-discovery ...  istiod (istio.io/istio/pilot/cmd/pilot-discovery)
//	cluster pilot-agent ...      istio-agent (istio.io/istio/pilot/cmd/pilot-agent)
//	cluster certs DIR NAME=SAN...  a CA and serving certificates for the components
//	cluster istio-file PATH      a file of the linked Istio module's manifests (its CRDs)
//	cluster webhooks REV URL CA  istiod's validating webhooks as Istio's charts render them
//	cluster version              the module versions linked in
//
// One binary so that the Kubernetes and Istio packages both need (client-go, apimachinery,
// apiserver, grpc, ...) compile once; each subcommand still runs as its own process, so a
// test can kill and restart istiod or the gateway's agent alone. Invoked through a link named
// like a subcommand (kubectl -> cluster), it runs that subcommand.
package main

import (
	// First: initialized before Istio's log package (see its doc).
	"github.com/sticky-canary/tools/cluster/internal/stdout"

	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	meshconfig "istio.io/api/mesh/v1alpha1"
	agent "istio.io/istio/pilot/cmd/pilot-agent/app"
	discovery "istio.io/istio/pilot/cmd/pilot-discovery/app"
	istioagent "istio.io/istio/pkg/istio-agent"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/security"
	"istio.io/istio/security/pkg/nodeagent/sds"
)

const usage = "usage: cluster etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|pilot-discovery|pilot-agent|certs|istio-file|webhooks|version [ARGS...]"

func main() {
	stdout.Restore()
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "cluster" || strings.HasPrefix(name, "cluster.") {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	os.Exit(run(name, args))
}

func run(name string, args []string) int {
	switch name {
	case "etcd":
		// etcdmain.Main reads its flags from args[1:], as from os.Args.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return 0
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	case "kubectl":
		os.Args = append([]string{"kubectl"}, args...)
		cmd := kubectl.NewDefaultKubectlCommand()
		if err := cli.RunNoErrOutput(cmd); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	case "pilot-discovery":
		istiolog.EnableKlogWithCobra()
		cmd := discovery.NewRootCommand()
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			istiolog.Error(err)
			return 1
		}
		return 0
	case "pilot-agent":
		istiolog.EnableKlogWithCobra()
		cmd := agent.NewRootCommand(
			func(options *security.Options, cache security.SecretManager, pkp *meshconfig.PrivateKeyProvider) istioagent.SDSService {
				return sds.NewServer(options, cache, pkp)
			})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			istiolog.Error(err)
			return 1
		}
		return 0
	case "certs":
		return certs(args)
	case "istio-file":
		return istioFile(args)
	case "webhooks":
		return webhooks(args)
	case "version":
		return version()
	default:
		fmt.Fprintf(os.Stderr, "cluster: unknown component %q; %s\n", name, usage)
		return 2
	}
}

// version prints the linked modules that decide behaviour, one "path version" per line.
func version() int {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(os.Stderr, "cluster: no build information in this binary")
		return 1
	}
	for _, dep := range info.Deps {
		switch dep.Path {
		case "istio.io/istio", "k8s.io/kubernetes", "go.etcd.io/etcd/server/v3", "k8s.io/kubectl":
			v := dep.Version
			if dep.Replace != nil {
				v = dep.Replace.Version
			}
			fmt.Printf("%s %s\n", dep.Path, v)
		}
	}
	return 0
}
