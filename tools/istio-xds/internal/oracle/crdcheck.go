package oracle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"istio.io/istio/manifests"
)

// istioCRDFile is the file of istio.io/istio/manifests (embedded: `//go:embed all:charts/*`)
// that holds every Istio CRD: what `istioctl install` and the base Helm chart apply.
const istioCRDFile = "charts/base/files/crd-all.gen.yaml"

// CRDCheckResult is what `istio-xds crd-check` found.
type CRDCheckResult struct {
	// Problems are what the API server would refuse, one line each:
	// FILE: document N: KIND/[NAMESPACE/]NAME: FIELD: message.
	Problems []string
	// Skipped are documents of kinds outside the Istio groups (*.istio.io), not checked.
	Skipped []string
	// OK are the Istio objects checked without a problem: FILE: document N: KIND/[NAMESPACE/]NAME (APIVERSION).
	OK []string
	// Checked counts the Istio objects checked.
	Checked int
	// Lines is all of it in input order, as the CLI prints it: problems as they are,
	// the others prefixed "ok: " and "skipped: ".
	Lines []string
}

func (r *CRDCheckResult) addProblem(line string) {
	r.Problems = append(r.Problems, line)
	r.Lines = append(r.Lines, line)
}

func (r *CRDCheckResult) addSkipped(line string) {
	r.Skipped = append(r.Skipped, line)
	r.Lines = append(r.Lines, "skipped: "+line)
}

func (r *CRDCheckResult) addOK(line string) {
	r.OK = append(r.OK, line)
	r.Lines = append(r.Lines, "ok: "+line)
}

// crdSet is a set of CRDs as a kube-apiserver holds them once they are installed.
type crdSet struct {
	source string
	byGK   map[schema.GroupKind]*apiextensions.CustomResourceDefinition
	mu     sync.Mutex
	// checked holds, per CRD name, the result of validating the CRD itself; versions holds
	// the per-version validators, both built on first use.
	checked  map[string]field.ErrorList
	versions map[schema.GroupVersionKind]*crdVersion
}

// crdVersion is what the API server builds for one served version of a CRD: the structural
// schema (defaults pruned), the OpenAPI schema validator, and the CEL validator of its
// x-kubernetes-validations rules (nil without rules).
type crdVersion struct {
	namespaced bool
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
	// hasStatus: the status subresource is on, so a create drops .status.
	hasStatus bool
}

var (
	istioCRDsOnce sync.Once
	istioCRDs     *crdSet
	istioCRDsErr  error
)

// istioCRDSet is the CRDs of the Istio this binary was built from.
func istioCRDSet() (*crdSet, error) {
	istioCRDsOnce.Do(func() {
		data, err := fs.ReadFile(manifests.FS, istioCRDFile)
		if err != nil {
			istioCRDsErr = fmt.Errorf("reading the embedded istio.io/istio/manifests %s: %v", istioCRDFile, err)
			return
		}
		module, err := IstioModule()
		if err != nil {
			module = "istio.io/istio"
		}
		istioCRDs, istioCRDsErr = loadCRDs(data, module+" manifests/"+istioCRDFile)
	})
	return istioCRDs, istioCRDsErr
}

// loadCRDs decodes CRDs the way the API server decodes a CRD create: apiextensions.k8s.io
// (v1 or v1beta1) with its defaults applied, converted to the internal version.
func loadCRDs(data []byte, source string) (*crdSet, error) {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	decoder := serializer.NewCodecFactory(scheme).UniversalDecoder(apiextensions.SchemeGroupVersion)
	set := &crdSet{
		source:   source,
		byGK:     map[schema.GroupKind]*apiextensions.CustomResourceDefinition{},
		checked:  map[string]field.ErrorList{},
		versions: map[schema.GroupVersionKind]*crdVersion{},
	}
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	for _, d := range docs {
		doc, raw := d.number, d.raw
		obj, _, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", source, doc, err)
		}
		crd, ok := obj.(*apiextensions.CustomResourceDefinition)
		if !ok {
			return nil, fmt.Errorf("%s: document %d: a %T, not a CustomResourceDefinition", source, doc, obj)
		}
		gk := schema.GroupKind{Group: crd.Spec.Group, Kind: crd.Spec.Names.Kind}
		if _, dup := set.byGK[gk]; dup {
			return nil, fmt.Errorf("%s: document %d: a second CRD for %s", source, doc, gk)
		}
		// What the CRD registry's PrepareForCreate does: status starts empty, with the
		// storage version as the one stored version.
		crd.Status = apiextensions.CustomResourceDefinitionStatus{}
		crd.Generation = 1
		for _, v := range crd.Spec.Versions {
			if v.Storage {
				crd.Status.StoredVersions = []string{v.Name}
				break
			}
		}
		set.byGK[gk] = crd
	}
	return set, nil
}

// validateCRD runs the API server's validation of a CRD create on it, once: a CRD it
// refuses (a schema that is not structural, a CEL rule that does not compile or whose
// estimated cost is over the per-rule or per-CRD limit) is never installed, so no object
// of its kind can be created either.
func (s *crdSet) validateCRD(crd *apiextensions.CustomResourceDefinition) field.ErrorList {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errs, ok := s.checked[crd.Name]; ok {
		return errs
	}
	errs := apiextensionsvalidation.ValidateCustomResourceDefinition(context.Background(), crd)
	s.checked[crd.Name] = errs
	return errs
}

// version builds (once) what the API server's CR handler builds for a served version.
func (s *crdSet) version(crd *apiextensions.CustomResourceDefinition, version string) (*crdVersion, error) {
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version, Kind: crd.Spec.Names.Kind}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.versions[gvk]; ok {
		return v, nil
	}
	validation, err := apiextensions.GetSchemaForVersion(crd, version)
	if err != nil {
		return nil, err
	}
	if validation == nil || validation.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("CRD %s version %s has no openAPIV3Schema", crd.Name, version)
	}
	if p := crd.Spec.PreserveUnknownFields; p != nil && *p {
		return nil, fmt.Errorf("CRD %s has spec.preserveUnknownFields: the API server would keep unknown fields, which crd-check does not model", crd.Name)
	}
	st, err := structuralschema.NewStructural(validation.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s version %s: schema is not structural: %v", crd.Name, version, err)
	}
	// As the handler does: a copy (defaults are shared), with defaults pruned.
	st = st.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(st); err != nil {
		return nil, fmt.Errorf("CRD %s version %s: pruning defaults: %v", crd.Name, version, err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(validation.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s version %s: %v", crd.Name, version, err)
	}
	sub, err := apiextensions.GetSubresourcesForVersion(crd, version)
	if err != nil {
		return nil, err
	}
	if sub != nil && sub.Scale != nil {
		return nil, fmt.Errorf("CRD %s version %s has a scale subresource, whose checks crd-check does not model", crd.Name, version)
	}
	v := &crdVersion{
		namespaced: crd.Spec.Scope == apiextensions.NamespaceScoped,
		structural: st,
		validator:  validator,
		// Compiled once per CRD version with the per-call cost limit, as the API server's
		// custom resource strategy does.
		cel:       cel.NewValidator(st, true, celconfig.PerCallLimit),
		hasStatus: sub != nil && sub.Status != nil,
	}
	s.versions[gvk] = v
	return v, nil
}

// isIstioGroup: the API groups crd-check checks.
func isIstioGroup(group string) bool {
	return strings.HasSuffix(group, ".istio.io")
}

// CRDCheck checks every object of an Istio kind in the files (directories walked for
// *.yaml/*.yml, not kustomization.yaml) against the CRDs of the Istio this binary was built
// from, as a kube-apiserver does on create. An unreadable or unparsable file is an
// InputError.
func CRDCheck(paths []string) (*CRDCheckResult, error) {
	set, err := istioCRDSet()
	if err != nil {
		return nil, err
	}
	return set.checkPaths(paths)
}

func (s *crdSet) checkPaths(paths []string) (*CRDCheckResult, error) {
	files, err := expandPaths(paths, "")
	if err != nil {
		return nil, err
	}
	res := &CRDCheckResult{}
	for _, file := range files {
		docs, err := readYAMLFile(file)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			if err := s.checkDocument(res, fmt.Sprintf("%s: document %d", file, d.number), d.raw); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// checkDocument checks one YAML document; a v1 List has its items checked one by one, as
// kubectl sends them.
func (s *crdSet) checkDocument(res *CRDCheckResult, where string, raw []byte) error {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return inputErrorf("%s: %v", where, err)
	}
	var obj map[string]any
	// As the API server's JSON decoding of unstructured objects: integers as int64.
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return inputErrorf("%s: %v", where, err)
	}
	if obj == nil {
		return inputErrorf("%s: not a YAML mapping", where)
	}
	u := &unstructured.Unstructured{Object: obj}
	if u.GetAPIVersion() == "v1" && u.GetKind() == "List" {
		items, _, err := unstructured.NestedSlice(obj, "items")
		if err != nil {
			return inputErrorf("%s: List items: %v", where, err)
		}
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return inputErrorf("%s: List item %d is not an object", where, i)
			}
			s.checkObject(res, fmt.Sprintf("%s: item %d", where, i), &unstructured.Unstructured{Object: m}, nil)
		}
		return nil
	}
	// A key given twice: the API server's strict field validation refuses such a YAML body
	// (a client that converts to JSON first sends the last value instead).
	_, dupErr := yaml.YAMLToJSONStrict(raw)
	s.checkObject(res, where, u, dupErr)
	return nil
}

// objectName is KIND/[NAMESPACE/]NAME as the input wrote it.
func objectName(u *unstructured.Unstructured) string {
	kind, name := u.GetKind(), u.GetName()
	if kind == "" {
		kind = "(no kind)"
	}
	if name == "" {
		name = "(no name)"
	}
	if ns := u.GetNamespace(); ns != "" {
		return kind + "/" + ns + "/" + name
	}
	return kind + "/" + name
}

// checkObject runs, for one object, what the API server runs for a create of it: decoding
// (unknown fields, which strict field validation refuses), defaulting, the create strategy's
// preparation, then the strategy's validation (metadata, OpenAPI schema, embedded object
// metadata, list-type invariants, and the CEL rules within the per-request cost budget).
// Validating admission (Istio's webhook) is not part of it: `translate` runs that.
func (s *crdSet) checkObject(res *CRDCheckResult, where string, u *unstructured.Unstructured, dupErr error) {
	name := objectName(u)
	problem := func(format string, args ...any) {
		res.addProblem(fmt.Sprintf("%s: %s: %s", where, name, fmt.Sprintf(format, args...)))
	}
	apiVersion, kind := u.GetAPIVersion(), u.GetKind()
	if apiVersion == "" || kind == "" {
		res.addSkipped(fmt.Sprintf("%s: %s: not a Kubernetes object (apiVersion %q, kind %q)", where, name, apiVersion, kind))
		return
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		problem("apiVersion: %v", err)
		return
	}
	if !isIstioGroup(gv.Group) {
		res.addSkipped(fmt.Sprintf("%s: %s (%s): not an Istio kind", where, name, apiVersion))
		return
	}
	res.Checked++
	before := len(res.Problems)
	defer func() {
		if len(res.Problems) == before {
			res.addOK(fmt.Sprintf("%s: %s (%s)", where, name, apiVersion))
		}
	}()
	if dupErr != nil {
		problem("(object): a key is given twice, refused under strict field validation: %v", dupErr)
		return
	}
	crd, ok := s.byGK[schema.GroupKind{Group: gv.Group, Kind: kind}]
	if !ok {
		problem("kind: no CRD for %s in group %s in %s (the API server has no such resource)", kind, gv.Group, s.source)
		return
	}
	if !apiextensions.HasServedCRDVersion(crd, gv.Version) {
		problem("apiVersion: %s is not a served version of CRD %s (served: %s)", apiVersion, crd.Name, strings.Join(servedVersions(crd), ", "))
		return
	}
	if errs := s.validateCRD(crd); len(errs) > 0 {
		for _, e := range errs {
			problem("CRD %s from %s would not install: %s", crd.Name, s.source, formatFieldError(e))
		}
		return
	}
	v, err := s.version(crd, gv.Version)
	if err != nil {
		problem("%v", err)
		return
	}

	obj := u.DeepCopy().Object
	// kubectl sends a namespaced object without a namespace to its context's namespace.
	if v.namespaced && u.GetNamespace() == "" {
		_ = unstructured.SetNestedField(obj, "default", "metadata", "namespace")
	}

	// Decoding: the handler's schema coercion with unknown-field tracking (on under
	// fieldValidation=Strict, which kubectl uses by default); every unknown field is an error.
	unknown, err := coerce(obj, v.structural)
	if err != nil {
		problem("%v", err)
		return
	}
	for _, p := range unknown {
		problem("%s: unknown field %q (pruned by the API server; refused under strict field validation, kubectl's default)", p, p)
	}
	if len(unknown) > 0 {
		return
	}
	structuraldefaulting.Default(obj, v.structural)

	// The create strategy's PrepareForCreate: with the status subresource, a create drops
	// .status.
	if v.hasStatus {
		delete(obj, "status")
	}
	created := &unstructured.Unstructured{Object: obj}
	created.SetGeneration(1)

	for _, e := range validateCreate(created, v) {
		problem("%s", formatFieldError(e))
	}
}

// coerce is what the API server's decoder does to a custom resource of a structural schema:
// metadata decoded strictly, unknown fields pruned (their paths returned), nulls of
// non-nullable fields without a default removed, embedded metadata coerced; apiVersion,
// kind and metadata are then written back.
func coerce(obj map[string]any, st *structuralschema.Structural) ([]string, error) {
	kind, foundKind, err := unstructured.NestedString(obj, "kind")
	if err != nil {
		return nil, fmt.Errorf("kind: %v", err)
	}
	apiVersion, foundAPIVersion, err := unstructured.NestedString(obj, "apiVersion")
	if err != nil {
		return nil, fmt.Errorf("apiVersion: %v", err)
	}
	meta, foundMeta, unknown, err := schemaobjectmeta.GetObjectMetaWithOptions(obj, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return nil, fmt.Errorf("metadata: %v", err)
	}
	unknown = append(unknown, structuralpruning.PruneWithOptions(obj, st, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, st)
	ferr, paths := schemaobjectmeta.CoerceWithOptions(nil, obj, st, false, schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if ferr != nil {
		return nil, errors.New(formatFieldError(ferr))
	}
	unknown = append(unknown, paths...)
	u := &unstructured.Unstructured{Object: obj}
	if foundKind {
		u.SetKind(kind)
	}
	if foundAPIVersion {
		u.SetAPIVersion(apiVersion)
	}
	if foundMeta {
		if err := schemaobjectmeta.SetObjectMeta(obj, meta); err != nil {
			return nil, fmt.Errorf("metadata: %v", err)
		}
	}
	sort.Strings(unknown)
	return unknown, nil
}

// validateCreate is the custom resource strategy's Validate for a create.
func validateCreate(u *unstructured.Unstructured, v *crdVersion) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metavalidation.ValidateObjectMetaAccessor(u, v.namespaced, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), v.validator)...)
	errs = append(errs, schemaobjectmeta.Validate(nil, u.Object, v.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, u.Object)...)
	if v.cel == nil {
		return errs
	}
	// The API server does not evaluate the CEL rules of an object whose schema errors mean
	// the rules may see values of the wrong shape or size; it says so instead.
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
		}
	}
	// One budget for all rules of the object (per request), as the API server gives.
	celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// formatFieldError is "FIELD: what is wrong" (FIELD "(object)" for the object itself).
func formatFieldError(e *field.Error) string {
	f := e.Field
	if f == "" || f == "<nil>" {
		f = "(object)"
	}
	return f + ": " + e.ErrorBody()
}

func servedVersions(crd *apiextensions.CustomResourceDefinition) []string {
	var out []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			out = append(out, v.Name)
		}
	}
	return out
}
