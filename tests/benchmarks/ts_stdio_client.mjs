// One list_snapshots over stdio with the TypeScript SDK's client (npm `@modelcontextprotocol/sdk`, installed by
// .ci/tools.sh), ours and the floor, the sessions open side by side and called in turn.
//
// Started by tests/benchmarks/stdio.py (`per_call_ts`) with one JSON argument:
//   {"sdk" (the package's directory), "servers": {NAME: {"command", "args", "env"}}, "calls", "warm_up"}
// After tools/list (which makes the client compile each tool's output schema, as every call then checks the
// structured result against it), round n starts with server n mod the number of servers, so none always
// follows the same other. Prints one line: {NAME: [milliseconds of each kept call], ..., "protocol": ...}.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.argv[2]);
const load = (path) => import(pathToFileURL(join(config.sdk, 'dist', 'esm', path)).href);
const { Client } = await load('client/index.js');
const { StdioClientTransport } = await load('client/stdio.js');

const sessions = {};
let protocol = null; // the revision the client and the servers agreed on, as the client tells its transport
for (const [name, server] of Object.entries(config.servers)) {
  const client = new Client({ name: 'ts-bench', version: '1.0.0' }, { capabilities: {} });
  const transport = new StdioClientTransport({ ...server, stderr: 'ignore' });
  transport.setProtocolVersion = (version) => {
    protocol = version;
  };
  await client.connect(transport);
  await client.listTools();
  sessions[name] = client;
}

const names = Object.keys(sessions);
const times = Object.fromEntries(names.map((name) => [name, []]));
for (let n = 0; n < config.warm_up + config.calls; n++) {
  const turn = n % names.length;
  for (const name of [...names.slice(turn), ...names.slice(0, turn)]) {
    const started = process.hrtime.bigint();
    const result = await sessions[name].callTool({ name: 'list_snapshots', arguments: { server_id: 12345 } });
    const took = Number(process.hrtime.bigint() - started) / 1e6;
    if (result.isError || !result.structuredContent) throw new Error(`${name}: ${JSON.stringify(result).slice(0, 200)}`);
    if (n >= config.warm_up) times[name].push(took);
  }
}
for (const client of Object.values(sessions)) await client.close();
console.log(JSON.stringify({ ...times, protocol }));
