// k8s_validate.mjs FILE...: validates Kubernetes manifests (YAML, one or more documents per
// file) against the Kubernetes OpenAPI schemas that the kubernetes-models package compiles,
// and rejects fields the schema does not know (as `kubectl apply --validate=strict` would: the
// schemas themselves allow any extra field, so a misspelt `readinesProbe` would pass).
// Prints "ok FILE KIND/NAME" or "FAIL FILE ...: reasons" per document and exits 1 when any
// document failed. With --dump, prints the parsed documents as one JSON array instead of the
// ok lines, for tests/test_k8s_manifests.py to check what the schemas cannot.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// Runs the schema's validator on a proxy of the document and records, per object, which keys
// the validator read. The compiled validators read every property their schema names and
// enumerate the keys of maps (labels, resources, ...); a key of a non-map object that was
// never read is not in the schema.
function watch(value, reads) {
  if (value === null || typeof value !== "object") return value;
  return new Proxy(value, {
    get(target, key, receiver) {
      const r = reads.get(target) ?? { keys: new Set(), enumerated: false };
      reads.set(target, r);
      if (typeof key === "string") r.keys.add(key);
      return watch(Reflect.get(target, key, receiver), reads);
    },
    ownKeys(target) {
      const r = reads.get(target) ?? { keys: new Set(), enumerated: false };
      r.enumerated = true;
      reads.set(target, r);
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(value, reads, path, out) {
  if (value === null || typeof value !== "object") return;
  const r = reads.get(value);
  if (!r) return; // the schema says nothing about what is inside (any value goes)
  for (const [key, child] of Object.entries(value)) {
    const p = `${path}/${key}`;
    if (!Array.isArray(value) && !r.enumerated && !r.keys.has(key)) {
      out.push(`${p}: unknown field "${key}"`);
      continue;
    }
    unknownFields(child, reads, p, out);
  }
}

async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string")
    throw new Error("apiVersion and kind must be strings");
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    throw new Error(`unknown apiVersion "${apiVersion}"`);
  }
  const cls = mod[kind];
  if (typeof cls !== "function" || cls.kind !== kind || cls.apiVersion !== apiVersion)
    throw new Error(`unknown kind "${kind}" in ${apiVersion}`);
  return cls;
}

async function validateDoc(doc) {
  const cls = await modelClass(doc.apiVersion, doc.kind);
  const reads = new Map();
  const problems = [];
  try {
    cls.prototype.validate.call(watch(doc, reads));
  } catch (e) {
    problems.push(String(e.message ?? e));
  }
  unknownFields(doc, reads, "", problems);
  if (problems.length) throw new Error(problems.join("; "));
}

const args = process.argv.slice(2);
const dump = args[0] === "--dump";
const files = dump ? args.slice(1) : args;
if (!files.length) {
  console.error("usage: k8s_validate.mjs [--dump] FILE...");
  process.exit(2);
}
let failed = 0;
const docs = [];
for (const file of files) {
  let parsed;
  try {
    parsed = parseAllDocuments(readFileSync(file, "utf8"), { prettyErrors: true });
  } catch (e) {
    console.log(`FAIL ${file}: ${e.message}`);
    failed++;
    continue;
  }
  if (!Array.isArray(parsed)) parsed = [parsed]; // an empty stream
  for (const [i, d] of parsed.entries()) {
    const where = `${file} document ${i + 1}`;
    if (d.errors.length) {
      console.log(`FAIL ${where}: YAML: ${d.errors.map((e) => e.message).join("; ")}`);
      failed++;
      continue;
    }
    const doc = d.toJS();
    if (doc === null) continue; // a comment-only document
    try {
      if (typeof doc !== "object" || Array.isArray(doc)) throw new Error("not a mapping");
      await validateDoc(doc);
      docs.push({ file, doc });
      if (!dump) console.log(`ok ${file} ${doc.kind}/${doc.metadata?.name}`);
    } catch (e) {
      console.log(`FAIL ${where} (${doc?.kind}/${doc?.metadata?.name}): ${e.message}`);
      failed++;
    }
  }
}
if (dump) console.log(JSON.stringify(docs));
process.exit(failed ? 1 : 0);
