// Runs naming calls as one user in one namespace with the real Nacos Node SDK and prints one
// JSON line per call: {op, ok: true, result} or {op, ok: false, status, message}.
// Usage: node rbac.js <host:port> <username> <password> <namespace> '<JSON list of calls>'
// where a call is {"op": "register"|"list"|"services"|"deregister", "service", "group"}.
'use strict';
const { NacosNamingClient } = require('nacos');

const [, , server, username, password, namespace, calls] = process.argv;
// The SDK retries a failed call on every server, logs each failure with warn and then throws
// a generic error: the HTTP status is only on the logged error.
let lastFailure = null;
const logger = {
  info() {}, debug() {}, log() {}, error() {},
  warn(err) { if (err && err.status) lastFailure = err; },
};
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

async function run(client, call) {
  const group = call.group || 'DEFAULT_GROUP';
  const instance = { ip: call.ip || '10.10.0.1', port: call.port || 8080 };
  switch (call.op) {
    case 'register':
      // ephemeral: false keeps the SDK's beat loop out of it (the call is the register).
      return client.registerInstance(call.service, { ...instance, ephemeral: false }, group);
    case 'deregister':
      return client.deregisterInstance(call.service, { ...instance, ephemeral: false }, group);
    case 'list':
      return client.getAllInstances(call.service, group, '', false);
    case 'services':
      return client._serverProxy.getServiceList(1, 1000, group);
    default:
      throw new Error('unknown op ' + call.op);
  }
}

async function main() {
  const client = new NacosNamingClient({ logger, serverList: server, namespace, username, password });
  await client.ready();
  for (const call of JSON.parse(calls)) {
    lastFailure = null;
    try {
      out({ op: call.op, ok: true, result: (await run(client, call)) || null });
    } catch (err) {
      const cause = lastFailure || err;
      out({ op: call.op, ok: false, status: cause.status || 0, message: String(cause.message) });
    }
  }
  await client.close();
  process.exit(0);
}

main().catch(err => {
  out({ error: String((err && err.stack) || err) });
  process.exit(1);
});
