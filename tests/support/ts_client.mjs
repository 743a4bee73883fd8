// The TypeScript SDK's client (npm `@modelcontextprotocol/sdk`, installed by .ci/tools.sh with the conformance
// tools) calling one tool over streamable HTTP with a bearer token, declaring URL elicitation.
//
// Started by tests/test_approval_page_browser.py with one JSON argument:
//   {"sdk" (the package's directory), "url" (the MCP endpoint), "token", "tool", "arguments"}
// Each URL elicitation is printed as a line {"url": ...} (the test opens it in a browser) and accepted; the
// tool's result is printed as a last line {"result": ...}.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.argv[2]);
const load = (path) => import(pathToFileURL(join(config.sdk, 'dist', 'esm', path)).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const { ElicitRequestSchema } = await load('types.js');

const client = new Client({ name: 'ts-approval-test', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  if (request.params.mode !== 'url') return { action: 'decline' };
  console.log(JSON.stringify({ url: request.params.url }));
  return { action: 'accept' };
});
const transport = new StreamableHTTPClientTransport(new URL(config.url), {
  requestInit: { headers: { Authorization: `Bearer ${config.token}` } },
});
await client.connect(transport);
const result = await client.callTool({ name: config.tool, arguments: config.arguments }, undefined, {
  timeout: 120000,
});
console.log(JSON.stringify({ result, protocol: transport.protocolVersion }));
await client.close();
