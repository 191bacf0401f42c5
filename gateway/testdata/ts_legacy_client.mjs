// Official TypeScript SDK client over the legacy HTTP+SSE transport
// (SSEClientTransport) for the gateway's legacy client test, against the
// reference everything-server. It prints one line per thing it saw:
//   session <protocol version>
//   tools <count>
//   progress <value>                   (test_tool_with_progress)
//   result <text>                      (its result)
//   list_changed                       (notifications/tools/list_changed)
//   sampling <text>                    (test_sampling's result, after answering the request)
//   done
// and exits 0, or prints "failed <error>" and exits 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  CreateMessageRequestSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const [url] = process.argv.slice(2);
const out = (line) => process.stdout.write(line + '\n');

try {
  const client = new Client({ name: 'mcpgate-ts-legacy', version: '1.0.0' }, { capabilities: { sampling: {} } });
  let samplingAsked = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    samplingAsked++;
    const text = req.params.messages[0]?.content?.text ?? '';
    return { model: 'test-model', role: 'assistant', content: { type: 'text', text: `answer to ${text}` } };
  });
  let changed;
  const listChanged = new Promise((resolve) => { changed = resolve; });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    out('list_changed');
    changed();
  });
  const transport = new SSEClientTransport(new URL(url));
  transport.onerror = (err) => process.stderr.write(`transport: ${err.message}\n`);
  await client.connect(transport);
  out(`session ${transport._protocolVersion ?? client.getServerVersion()?.version ?? '?'}`);

  const tools = await client.listTools();
  out(`tools ${tools.tools.length}`);

  const res = await client.callTool(
    { name: 'test_tool_with_progress', arguments: {} },
    undefined,
    { onprogress: (p) => out(`progress ${p.progress}`) },
  );
  out(`result ${res.content[0].text}`);

  await client.callTool({ name: 'test_trigger_tool_change', arguments: {} });
  await Promise.race([
    listChanged,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no tools/list_changed within 10s')), 10000)),
  ]);

  const s = await client.callTool({ name: 'test_sampling', arguments: { prompt: 'hello' } });
  out(`sampling ${s.content[0].text} (asked ${samplingAsked})`);

  await client.close();
  out('done');
  process.exit(0);
} catch (err) {
  out(`failed ${err?.stack ?? err}`);
  process.exit(1);
}
