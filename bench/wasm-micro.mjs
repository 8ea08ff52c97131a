// The filter's own work per request, without Envoy: each module runs in Node's V8 (the engine
// Envoy embeds, an older version) with host calls answered by small JavaScript stubs, through
// the callbacks Envoy makes for one request: context create, request headers, response
// headers, delete. Modules run side by side, interleaved over rounds, and are reported as ns
// per request and as a ratio to the first module. The stubs themselves cost time too (about
// 100-200 ns per request, mostly copying the headers into the module), the same for every
// module, so differences are the modules' own.
//
//   node bench/wasm-micro.mjs [--new-clients] [--cpu] [--log-level N] [--rounds N] [--requests N] A.wasm [B.wasm ...]
//
// `--cpu` times each round by the process's CPU time instead of the wall clock: steadier on a
// machine shared with other jobs (time spent descheduled is not counted).
// `--log-level` is what `proxy_get_log_level` answers (proxy-wasm levels: 1 debug, 2 info, the
// default; a module at debug writes its decision trace, which the stub drops).
//
// Exploration aid for filter/ changes (which lever moved which function); the figures in
// docs/benchmarks.md come from bench/gateway.py on a real Envoy.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
let rounds = 5;
let requests = 200000;
let newClients = false;
let logLevel = 2;
let cpu = false;
const modules = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--rounds') rounds = Number(args[++i]);
  else if (a === '--requests') requests = Number(args[++i]);
  else if (a === '--new-clients') newClients = true;
  else if (a === '--log-level') logLevel = Number(args[++i]);
  else if (a === '--cpu') cpu = true;
  else modules.push(a);
}
if (modules.length === 0 || !(rounds > 0) || !(requests > 0)) {
  console.error('usage: node bench/wasm-micro.mjs [--new-clients] [--cpu] [--log-level N] [--rounds N] [--requests N] A.wasm [B.wasm ...]');
  process.exit(2);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

// The benchmark's policy (bench/gateway.py, sticky_route(0)).
const POLICY = enc.encode(JSON.stringify({routes: [{
  name: 'app-0', hosts: ['app-0.example.com'], salt: 'app-0-2026',
  versions: [{name: 'v1', weight: 90}, {name: 'v2', weight: 10}],
  key_chain: [{cookie: 'session'}, {new_client_id: {cookie: 'sticky-canary-id'}}],
  override: {header: 'x-canary-force', allow: ['v2'], secret_header: 'x-canary-secret', secret: '0123456789abcdef0123'},
  routing_token: {header: 'x-canary-version', value: '0123456789abcdef0123456789abcdef'},
}]}));

// proxy_get_header_map_pairs' format: count, (key length, value length) per pair, then each key
// and value followed by a NUL.
function serialize(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setUint32(0, parts.length, true);
  let o = 4;
  for (const [k, v] of parts) {
    view.setUint32(o, k.length, true);
    view.setUint32(o + 4, v.length, true);
    o += 8;
  }
  for (const [k, v] of parts) {
    buf.set(k, o);
    o += k.length + 1;
    buf.set(v, o);
    o += v.length + 1;
  }
  return buf;
}

const REQUESTS = Array.from({length: 1000}, (_, i) => serialize([
  [':authority', 'app-0.example.com'], [':path', '/'], [':method', 'GET'], [':scheme', 'http'],
  ['user-agent', 'wrk'],
  ['cookie', newClients ? 'theme=dark' : `session=${i.toString(16).padStart(32, '0')}`],
]));

function load(file) {
  const wasm = new WebAssembly.Module(fs.readFileSync(file));
  const noop = path.basename(file).includes('noop');
  const host = {instance: null, headers: null, view: null, writes: 0};
  const view = () => {
    if (!host.view || host.view.buffer !== host.instance.exports.memory.buffer) {
      host.view = new DataView(host.instance.exports.memory.buffer);
    }
    return host.view;
  };
  const give = (bytes, outData, outSize) => {
    const at = host.instance.exports.proxy_on_memory_allocate(bytes.length);
    new Uint8Array(host.instance.exports.memory.buffer, at, bytes.length).set(bytes);
    view().setUint32(outData, at, true);
    view().setUint32(outSize, bytes.length, true);
    return 0;
  };
  const env = {
    proxy_log: (level, at, size) => {
      if (level >= 4) console.error(path.basename(file), dec.decode(new Uint8Array(host.instance.exports.memory.buffer, at, size)));
      return 0;
    },
    proxy_get_log_level: (out) => { view().setUint32(out, logLevel, true); return 0; },
    proxy_get_buffer_bytes: (buffer, start, max, outData, outSize) => give(noop ? new Uint8Array() : POLICY, outData, outSize),
    proxy_get_header_map_pairs: (map, outData, outSize) => give(host.headers, outData, outSize),
    proxy_get_header_map_value: () => 1,
    proxy_replace_header_map_value: () => { host.writes++; return 0; },
    proxy_add_header_map_value: () => { host.writes++; return 0; },
    proxy_remove_header_map_value: () => 0,
    proxy_define_metric: (kind, at, size, out) => { view().setUint32(out, 1, true); return 0; },
    proxy_get_current_time_nanoseconds: (out) => { view().setBigUint64(out, BigInt(Date.now()) * 1000000n, true); return 0; },
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(wasm)) {
    imports[imp.module] ??= {};
    let f = imp.module === 'env' ? env[imp.name] : undefined;
    if (imp.name === 'random_get') {
      f = (at, size) => {
        const bytes = new Uint8Array(host.instance.exports.memory.buffer, at, size);
        for (let i = 0; i < size; i++) bytes[i] = (Math.random() * 256) | 0;
        return 0;
      };
    }
    imports[imp.module][imp.name] = f ?? (() => 0);
  }
  host.instance = new WebAssembly.Instance(wasm, imports);
  const e = host.instance.exports;
  e._initialize?.();
  e.proxy_on_context_create(1, 0);
  e.proxy_on_vm_start?.(1, 0);
  if (!e.proxy_on_configure(1, noop ? 0 : POLICY.length)) throw new Error(`${file}: configuration refused`);
  let next = 2;
  const run = (n) => {
    const start = cpu ? process.cpuUsage() : process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const id = next++;
      host.headers = REQUESTS[i % REQUESTS.length];
      e.proxy_on_context_create(id, 1);
      e.proxy_on_request_headers(id, 6, 1);
      e.proxy_on_response_headers?.(id, 2, 0);
      e.proxy_on_delete?.(id);
    }
    if (cpu) {
      const used = process.cpuUsage(start);
      return ((used.user + used.system) * 1000) / n;
    }
    return Number(process.hrtime.bigint() - start) / n;
  };
  return {file, run, host, times: []};
}

const loaded = modules.map(load);
for (const m of loaded) {
  m.run(Math.min(requests, 50000));
  if (!path.basename(m.file).includes('noop') && m.host.writes === 0) {
    throw new Error(`${m.file}: made no header write during warm-up: the requests did not reach its route`);
  }
}
for (let r = 0; r < rounds; r++) {
  // Rotate the order per round, so a burst of background load does not hit one module only.
  for (let k = 0; k < loaded.length; k++) {
    const m = loaded[(k + r) % loaded.length];
    m.times.push(m.run(requests));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = loaded[0];
console.log(`${newClients ? 'new clients' : 'returning clients'}, log level ${logLevel}, ${cpu ? 'CPU time' : 'wall clock'}, ${rounds} rounds of ${requests} requests, Node ${process.versions.node} (V8 ${process.versions.v8})`);
console.log('| module | ns/request (median) | vs first (within rounds) |');
console.log('|---|---:|---:|');
for (const m of loaded) {
  const ratio = median(m.times.map((t, i) => t / base.times[i]));
  console.log(`| ${m.file} | ${median(m.times).toFixed(0)} | ${ratio.toFixed(2)} |`);
}
