package main

import (
	"context"
	"fmt"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/istio"
	istioutil "github.com/argoproj/argo-rollouts/utils/istio"
	"github.com/argoproj/argo-rollouts/utils/record"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"
)

// argoRun drives Argo Rollouts' own Istio traffic-routing reconciler the way its rollout
// controller does for a canary with trafficRouting.istio: SetWeight(w) at every setWeight
// step, SetWeight(0) once the stable ReplicaSet runs the new version (promotion) or when the
// rollout is aborted (rollback). The VirtualService lives in a fake dynamic client, as in
// Argo's own tests; the reconciler reads it back through the client on every call.
type argoRun struct {
	rollout    *v1alpha1.Rollout
	client     *dynamicfake.FakeDynamicClient
	reconciler *istio.Reconciler
	// The VirtualService's name and namespace, and the apiVersion the input used.
	vsName, vsNamespace, vsAPIVersion string
	// Other objects from the input (Services), written unchanged with every step.
	others [][]byte
}

func newArgo(docs [][]byte) (tool, error) {
	var ro *v1alpha1.Rollout
	var vs *unstructured.Unstructured
	var others [][]byte
	for _, d := range docs {
		kind, err := kindOf(d)
		if err != nil {
			return nil, err
		}
		switch kind {
		case "Rollout":
			if ro != nil {
				return nil, fmt.Errorf("more than one Rollout")
			}
			ro = &v1alpha1.Rollout{}
			if err := yaml.UnmarshalStrict(d, ro); err != nil {
				return nil, fmt.Errorf("Rollout: %w", err)
			}
		case "VirtualService":
			if vs != nil {
				return nil, fmt.Errorf("more than one VirtualService")
			}
			m := map[string]any{}
			if err := yaml.Unmarshal(d, &m); err != nil {
				return nil, fmt.Errorf("VirtualService: %w", err)
			}
			vs = &unstructured.Unstructured{Object: m}
		case "Service":
			others = append(others, d)
		}
	}
	if ro == nil {
		return nil, fmt.Errorf("no Rollout (apiVersion argoproj.io/v1alpha1)")
	}
	if vs == nil {
		return nil, fmt.Errorf("no VirtualService")
	}
	c := ro.Spec.Strategy.Canary
	if c == nil || c.TrafficRouting == nil || c.TrafficRouting.Istio == nil || c.TrafficRouting.Istio.VirtualService == nil {
		return nil, fmt.Errorf("Rollout %s: want strategy.canary.trafficRouting.istio.virtualService", ro.Name)
	}
	if ro.Namespace == "" {
		return nil, fmt.Errorf("Rollout %s: metadata.namespace is required", ro.Name)
	}
	if vs.GetNamespace() == "" {
		vs.SetNamespace(ro.Namespace)
	}
	gvr := istioutil.GetIstioVirtualServiceGVR()
	run := &argoRun{
		rollout:      ro,
		vsName:       vs.GetName(),
		vsNamespace:  vs.GetNamespace(),
		vsAPIVersion: vs.GetAPIVersion(),
		others:       others,
	}
	// The dynamic client keys objects by the version Argo asks for.
	vs.SetAPIVersion(schema.GroupVersion{Group: gvr.Group, Version: gvr.Version}.String())
	listKinds := map[schema.GroupVersionResource]string{
		gvr:                                    "VirtualServiceList",
		istioutil.GetIstioDestinationRuleGVR(): "DestinationRuleList",
	}
	run.client = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, vs)
	run.reconciler = istio.NewReconciler(ro, run.client, record.NewFakeEventRecorder(), nil, nil, nil)
	return run, nil
}

func (a *argoRun) apply(s step) ([][]byte, error) {
	if err := a.reconciler.SetWeight(int32(s.CanaryWeight)); err != nil {
		return nil, err
	}
	verified, err := a.reconciler.VerifyWeight(int32(s.CanaryWeight))
	if err != nil {
		return nil, err
	}
	if verified != nil && !*verified {
		return nil, fmt.Errorf("Argo Rollouts does not verify weight %d", s.CanaryWeight)
	}
	gvr := istioutil.GetIstioVirtualServiceGVR()
	obj, err := a.client.Resource(gvr).Namespace(a.vsNamespace).Get(context.Background(), a.vsName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	obj = obj.DeepCopy()
	obj.SetAPIVersion(a.vsAPIVersion)
	unstructured.RemoveNestedField(obj.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	y, err := yaml.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	return append(append([][]byte{}, a.others...), y), nil
}
