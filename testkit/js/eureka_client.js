// Runs one real eureka-js-client (npm, pinned 4.5.0) against a Eureka server and reports what it
// does as JSON lines on stdout, for testkit/eureka_clients.py to read:
//   {"event": "registered"} / "heartbeat" {"n"} / "registryUpdated" {"apps": {APP: [...]}} /
//   "deregistered" / "started" / "log" {"level", "msg"} / "error" {"error"} / "exit" {"code"}
// One argument: a JSON object with host, port, servicePath, user, password (HTTP Basic, as the
// client's README shows with requestMiddleware), app, hostName, ipAddr, instancePort,
// instanceId (optional: without it the client keys itself by hostName, like a default install),
// leaseInfo (optional: renewalIntervalInSecs/durationInSecs sent with the registration),
// heartbeatMs, fetchMs, watch (app names whose instances each registryUpdated lists).
// A line "stop" on stdin calls client.stop() (DELETE), then the process exits; EOF does too.
'use strict';

const readline = require('readline');
const { Eureka } = require('eureka-js-client');

const options = JSON.parse(process.argv[2]);

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, at: Date.now(), ...(fields || {}) }) + '\n');
}

function text(args) {
  return args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
}

// The client's own log lines, so a failing test shows why (it logs a refused register as a warning).
const logger = {
  level() { return 20; },
  debug(...args) { emit('log', { level: 'debug', msg: text(args) }); },
  info(...args) { emit('log', { level: 'info', msg: text(args) }); },
  warn(...args) { emit('log', { level: 'warn', msg: text(args) }); },
  error(...args) { emit('log', { level: 'error', msg: text(args) }); },
};

const instance = {
  app: options.app,
  hostName: options.hostName,
  ipAddr: options.ipAddr,
  port: { $: options.instancePort, '@enabled': true },
  vipAddress: options.app.toLowerCase(),
  dataCenterInfo: {
    '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo',
    name: 'MyOwn',
  },
};
if (options.instanceId) instance.instanceId = options.instanceId;
if (options.leaseInfo) instance.leaseInfo = options.leaseInfo;

const client = new Eureka({
  logger,
  instance,
  eureka: {
    host: options.host,
    port: options.port,
    servicePath: options.servicePath,
    heartbeatInterval: options.heartbeatMs,
    registryFetchInterval: options.fetchMs,
    maxRetries: 0,
  },
  requestMiddleware(requestOpts, done) {
    if (options.user) requestOpts.auth = { user: options.user, password: options.password };
    done(requestOpts);
  },
});

let beats = 0;
client.on('registered', () => emit('registered'));
client.on('started', () => emit('started'));
client.on('heartbeat', () => { beats += 1; emit('heartbeat', { n: beats }); });
client.on('deregistered', () => emit('deregistered'));
client.on('registryUpdated', () => {
  const apps = {};
  for (const name of options.watch || []) {
    apps[name] = client.getInstancesByAppId(name).map((i) => ({
      app: i.app,
      instanceId: i.instanceId,
      hostName: i.hostName,
      ipAddr: i.ipAddr,
      port: i.port && i.port.$,
      status: i.status,
    }));
  }
  emit('registryUpdated', { apps });
});

client.start((err) => { if (err) emit('error', { error: text([err]) }); });

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  client.stop((err) => {
    if (err) emit('error', { error: text([err]) });
    emit('exit', { code: err ? 1 : 0 });
    process.exit(err ? 1 : 0);
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stop') stop();
}).on('close', stop);
