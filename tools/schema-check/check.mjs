// Validates rendered manifests against the published Kubernetes, Istio and Gateway API
// schemas (npm kubernetes-models, @kubernetes-models/istio and
// @kubernetes-models/gateway-api, @kubernetes-models/prometheus-operator, generated from the upstream OpenAPI and CRD schemas:
// types, enums, required fields, integers).
//
//   node check.mjs [--elsewhere APIVERSION/KIND]... DIR_OR_FILE...
//
// --elsewhere names a kind that has no published npm model and that the caller validates
// another way (TrafficExtension: `istio-xds crd-check`, against the CRD of each revision's
// Istio); such objects are counted and listed as "checked elsewhere", never as valid.
//
// Files are read as YAML 1.1, the way kubectl reads them, so a value such as
// `on` or `yes` that kubectl would turn into a boolean fails here too. Every
// object must have a published schema: an unknown apiVersion/kind is an error,
// never skipped. kustomization.yaml is checked to list existing files only.
// Prints one line per problem and exits 1 if there is any.
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { join, dirname, basename } from "node:path";
import { parseAllDocuments } from "yaml";

const problems = [];
let objects = 0;
let files = 0;

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const candidates = group.endsWith(".istio.io")
    ? [`@kubernetes-models/istio/${group}/${version}`]
    : group === "gateway.networking.k8s.io"
      ? [`@kubernetes-models/gateway-api/${group}/${version}`]
      : group === "monitoring.coreos.com"
      ? [`@kubernetes-models/prometheus-operator/${group}/${version}`]
      : group === ""
      ? [`kubernetes-models/${version}`]
      : [`kubernetes-models/${group}/${version}`];
  for (const name of candidates) {
    try {
      const module = await import(name);
      if (module[kind]) return module[kind];
    } catch {
      // try the next candidate
    }
  }
  return null;
}

function yamlFiles(path) {
  if (statSync(path).isDirectory()) {
    return readdirSync(path)
      .filter((name) => name.endsWith(".yaml") || name.endsWith(".yml"))
      .sort()
      .map((name) => join(path, name));
  }
  return [path];
}

async function checkFile(file) {
  files += 1;
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1", uniqueKeys: true });
  for (const doc of docs) {
    for (const error of doc.errors) problems.push(`${file}: YAML: ${error.message}`);
    for (const warning of doc.warnings) problems.push(`${file}: YAML: ${warning.message}`);
    const object = doc.toJS();
    if (object === null || object === undefined) continue;
    const label = `${file}: ${object.kind ?? "?"}/${object.metadata?.name ?? "?"}`;
    if (object.kind === "Kustomization") {
      for (const resource of object.resources ?? []) {
        if (!existsSync(join(dirname(file), resource))) problems.push(`${label}: lists ${resource}, which does not exist`);
      }
      objects += 1;
      continue;
    }
    if (typeof object.apiVersion !== "string" || typeof object.kind !== "string") {
      problems.push(`${label}: no apiVersion/kind`);
      continue;
    }
    if (elsewhere.has(`${object.apiVersion}/${object.kind}`)) {
      deferred.push(label);
      continue;
    }
    const Model = await modelFor(object.apiVersion, object.kind);
    if (!Model) {
      problems.push(`${label}: no published schema for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    try {
      new Model(object).validate();
      objects += 1;
    } catch (error) {
      problems.push(`${label}: ${error.message}`);
    }
  }
}

const args = [];
const elsewhere = new Set();
const deferred = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 1) {
  if (argv[i] === "--elsewhere") {
    const kind = argv[i + 1];
    if (!kind || kind.split("/").length < 2) {
      console.error("--elsewhere needs APIVERSION/KIND, e.g. extensions.istio.io/v1alpha1/TrafficExtension");
      process.exit(2);
    }
    elsewhere.add(kind);
    i += 1;
  } else {
    args.push(argv[i]);
  }
}
if (args.length === 0) {
  console.error("usage: node check.mjs [--elsewhere APIVERSION/KIND]... DIR_OR_FILE...");
  process.exit(2);
}
for (const arg of args) {
  if (!existsSync(arg)) {
    problems.push(`${arg}: does not exist`);
    continue;
  }
  for (const file of yamlFiles(arg)) await checkFile(file);
}
for (const problem of problems) console.log(problem);
for (const label of deferred) console.log(`${label}: checked elsewhere (--elsewhere)`);
console.log(
  `schema-check: ${objects} objects valid, ${problems.length} problems, ${deferred.length} checked elsewhere, in ${files} files`,
);
process.exit(problems.length === 0 && objects > 0 ? 0 : 1);
