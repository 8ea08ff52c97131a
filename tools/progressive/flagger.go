package main

import (
	"context"
	"fmt"

	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	istiov1alpha3 "github.com/fluxcd/flagger/pkg/apis/istio/v1alpha3"
	clientset "github.com/fluxcd/flagger/pkg/client/clientset/versioned"
	fakeflagger "github.com/fluxcd/flagger/pkg/client/clientset/versioned/fake"
	"github.com/fluxcd/flagger/pkg/router"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	fakekube "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

// flaggerRun drives Flagger's own routers the way its canary controller does for a
// Deployment target with the Istio provider: the Kubernetes router creates the apex,
// primary and canary Services, the Istio router creates the DestinationRules and the
// VirtualService, and every step calls IstioRouter.SetRoutes(primary, canary, false).
type flaggerRun struct {
	canary     *flaggerv1.Canary
	kubeClient kubernetes.Interface
	meshClient clientset.Interface
	mesh       router.Interface
}

func newFlagger(docs [][]byte) (tool, error) {
	var canary *flaggerv1.Canary
	for _, d := range docs {
		kind, err := kindOf(d)
		if err != nil {
			return nil, err
		}
		if kind != "Canary" {
			continue
		}
		if canary != nil {
			return nil, fmt.Errorf("more than one Canary")
		}
		canary = &flaggerv1.Canary{}
		if err := yaml.UnmarshalStrict(d, canary); err != nil {
			return nil, fmt.Errorf("Canary: %w", err)
		}
	}
	if canary == nil {
		return nil, fmt.Errorf("no Canary (apiVersion flagger.app/v1beta1)")
	}
	if p := canary.Spec.Provider; p != "" && p != flaggerv1.IstioProvider {
		return nil, fmt.Errorf("Canary %s: provider %q, want istio", canary.Name, p)
	}
	if canary.Spec.TargetRef.Kind != "Deployment" {
		return nil, fmt.Errorf("Canary %s: targetRef.kind %q, want Deployment", canary.Name, canary.Spec.TargetRef.Kind)
	}
	kubeClient := fakekube.NewSimpleClientset()
	flaggerClient := fakeflagger.NewSimpleClientset(canary)
	meshClient := fakeflagger.NewSimpleClientset()
	factory := router.NewFactory(nil, kubeClient, flaggerClient, "", "", zap.NewNop().Sugar(), meshClient, false)

	// What Flagger's scheduler does on a new Canary: the Kubernetes router's Initialize and
	// Reconcile (Services), then the mesh router's Reconcile. The label is the Deployment's
	// selector label, "app" by default, its value the target's name.
	kubeRouter := factory.KubernetesRouter("Deployment", "app", canary.Spec.TargetRef.Name, nil)
	if err := kubeRouter.Initialize(canary); err != nil {
		return nil, err
	}
	if err := kubeRouter.Reconcile(canary); err != nil {
		return nil, err
	}
	mesh := factory.MeshRouter(flaggerv1.IstioProvider, "")
	if err := mesh.Reconcile(canary); err != nil {
		return nil, err
	}
	return &flaggerRun{canary: canary, kubeClient: kubeClient, meshClient: meshClient, mesh: mesh}, nil
}

func (f *flaggerRun) apply(s step) ([][]byte, error) {
	// Promotion ends with the primary (now running the canary's spec) at 100 and the canary
	// at 0; a rollback routes everything back to the primary. Both are SetRoutes(100, 0).
	if err := f.mesh.SetRoutes(f.canary, 100-s.CanaryWeight, s.CanaryWeight, false); err != nil {
		return nil, err
	}
	// Flagger's controller reconciles again on every tick; that must leave the weights alone.
	if err := f.mesh.Reconcile(f.canary); err != nil {
		return nil, err
	}
	primary, canary, _, err := f.mesh.GetRoutes(f.canary)
	if err != nil {
		return nil, err
	}
	if primary != 100-s.CanaryWeight || canary != s.CanaryWeight {
		return nil, fmt.Errorf("Flagger reads back %d/%d, want %d/%d", primary, canary, 100-s.CanaryWeight, s.CanaryWeight)
	}
	ctx := context.Background()
	ns := f.canary.Namespace
	var out [][]byte
	services, err := f.kubeClient.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range services.Items {
		y, err := toYAML("v1", "Service", cleanService(services.Items[i]))
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	rules, err := f.meshClient.NetworkingV1alpha3().DestinationRules(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range rules.Items {
		y, err := toYAML(istiov1alpha3.SchemeGroupVersion.String(), "DestinationRule", rules.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	services2, err := f.meshClient.NetworkingV1alpha3().VirtualServices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range services2.Items {
		y, err := toYAML(istiov1alpha3.SchemeGroupVersion.String(), "VirtualService", services2.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	return out, nil
}

// cleanService drops what the API server would fill in (a fake client leaves it empty).
func cleanService(s corev1.Service) corev1.Service {
	s.Status = corev1.ServiceStatus{}
	return s
}
