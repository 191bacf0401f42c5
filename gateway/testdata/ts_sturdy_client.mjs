// Official TypeScript SDK client for the gateway's cut tests, in its default
// configuration (standalone GET stream on, default reconnection options).
//
// Usage: node ts_sturdy_client.mjs URL COUNT
// (the stream tool's rate: MCPGATE_TS_STREAM_RATE events/s, default 1000)
//
// It prints, one per line on stdout:
//   session <Mcp-Session-Id> <negotiated protocol version>   once connected
//   progress <n>                                             per progress notification
//   list_changed tools                                       per notifications/tools/list_changed
//   result <json>                                            once the stream call returned
//   failed <message>                                         instead, if it failed
// and transport errors on stderr. After the result it keeps the session (and
// its standalone stream) open until stdin ends, then closes and exits.
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const rate = Number(process.env.MCPGATE_TS_STREAM_RATE ?? 1000);
const out = (line) => process.stdout.write(`${line}\n`);

const client = new Client({ name: 'mcpgate-ts-sturdy', version: '1.0.0' });
client.setNotificationHandler(ToolListChangedNotificationSchema, () => out('list_changed tools'));
const transport = new StreamableHTTPClientTransport(new URL(url));
transport.onerror = (err) => process.stderr.write(`transport: ${err.message}\n`);
await client.connect(transport);
out(`session ${transport.sessionId} ${transport.protocolVersion}`);

const stdinDone = new Promise((resolve) => {
  createInterface({ input: process.stdin }).on('close', resolve);
});

let code = 0;
try {
  const result = await client.callTool(
    { name: 'stream', arguments: { count, rate } },
    undefined,
    {
      onprogress: (p) => out(`progress ${p.progress}`),
      timeout: 170000,
      resetTimeoutOnProgress: true,
    },
  );
  out(`result ${JSON.stringify(result)}`);
} catch (err) {
  out(`failed ${err.message}`);
  code = 1;
}
await stdinDone;
await client.close();
process.exit(code);
