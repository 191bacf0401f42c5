// Official TypeScript SDK client for the gateway's zero-loss test: calls the
// mock upstream's stream tool and prints "progress <n>" per notification and
// "result <json>" once. Reconnection is the SDK's own (Last-Event-ID).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);

const client = new Client({ name: 'mcpgate-ts-test', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url));
transport.onerror = (err) => process.stderr.write(`transport: ${err.message}\n`);
await client.connect(transport);

const result = await client.callTool(
  { name: 'stream', arguments: { count, rate: 1000 } },
  undefined,
  {
    onprogress: (p) => process.stdout.write(`progress ${p.progress}\n`),
    timeout: 170000,
    resetTimeoutOnProgress: true,
  },
);
process.stdout.write(`result ${JSON.stringify(result)}\n`);
await client.close();
