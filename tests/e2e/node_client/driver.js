// Runs one scenario with the real Nacos Node SDK and prints one JSON object per line.
// Usage: node driver.js <host:port> <username> <password> <scenario> <service>
'use strict';
const { NacosNamingClient } = require('nacos');

const [, , server, username, password, scenario, service] = process.argv;
const quiet = { info() {}, warn() {}, debug() {}, log() {}, error() {} };
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

async function main() {
  const client = new NacosNamingClient({
    logger: quiet, serverList: server, namespace: 'public', username, password,
  });
  await client.ready();
  if (scenario === 'register-list') {
    await client.registerInstance(service, { ip: '10.16.0.1', port: 8080 });
    out({ hosts: await client.getAllInstances(service, 'DEFAULT_GROUP', '', false) });
    out({ status: await client.getServerStatus() });
    out({ services: await client._serverProxy.getServiceList(1, 10000, 'DEFAULT_GROUP') });
    await client.deregisterInstance(service, { ip: '10.16.0.1', port: 8080 });
    out({ after: await client.getAllInstances(service, 'DEFAULT_GROUP', '', false) });
    await client.close();
    process.exit(0);
  } else if (scenario === 'subscribe') {
    client.subscribe({ serviceName: service }, hosts => out({ hosts, at: Date.now() }));
  } else if (scenario === 'beat') {
    await client.registerInstance(service, { ip: '10.18.0.1', port: 8080 });
    out({ registered: true });
  } else {
    throw new Error('unknown scenario ' + scenario);
  }
}

main().catch(err => {
  out({ error: String((err && err.stack) || err) });
  process.exit(1);
});
