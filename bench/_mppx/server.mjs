// mppx as a paid server: every POST costs one Tempo charge (pathUSD, pull mode, server broadcasts
// and waits for the receipt); a paid POST is answered with a fixed chat-completion-shaped JSON.
//
// usage: MPPX_BENCH_SECRET=<>=32 bytes> node server.mjs <port> <rpc-url> <chain-id> <recipient> <amount>
// <amount> is a decimal pathUSD string ("0.001").  Prints "listening <port>" once it accepts.
//
// Devnet-only shim: anvil mines a block only when a transaction arrives, so its latest block can be
// much older than the client's expiring-nonce valid_before window (30 s on T4), and mppx's
// pre-broadcast eth_call simulation would reject a transaction the chain would mine.  The viem
// transport below adds the block override {time: now} to each eth_call; nothing else is changed,
// and what mppx verifies stays the same.
import * as nodeHttp from 'node:http'
import { createClient, defineChain, http } from 'viem'
import { Mppx, tempo } from 'mppx/server'

const [portText, rpcUrl, chainIdText, recipient, amount] = process.argv.slice(2)
const secretKey = process.env.MPPX_BENCH_SECRET ?? ''
if (!portText || !rpcUrl || !recipient || !amount || secretKey.length < 32) {
  console.error('usage: MPPX_BENCH_SECRET=... node server.mjs <port> <rpc-url> <chain-id> <recipient> <amount>')
  process.exit(2)
}
const chainId = Number(chainIdText)
const PATH_USD = '0x20c0000000000000000000000000000000000000'

function withCurrentBlockTime(call) {
  if (call?.method !== 'eth_call' || !Array.isArray(call.params)) return call
  const [tx, block = 'latest', state = {}, overrides = {}] = call.params
  const time = `0x${Math.floor(Date.now() / 1000).toString(16)}`
  return { ...call, params: [tx, block, state ?? {}, { ...overrides, time }] }
}

async function devnetFetch(input, init) {
  if (init && typeof init.body === 'string') {
    const parsed = JSON.parse(init.body)
    const shimmed = Array.isArray(parsed) ? parsed.map(withCurrentBlockTime) : withCurrentBlockTime(parsed)
    init = { ...init, body: JSON.stringify(shimmed) }
  }
  return fetch(input, init)
}

const chain = defineChain({
  id: chainId,
  name: 'tempo devnet',
  nativeCurrency: { name: 'USD', symbol: 'USD', decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
})
const client = createClient({ chain, transport: http(rpcUrl, { fetchFn: devnetFetch }) })

const mppx = Mppx.create({
  methods: [tempo.charge({ currency: PATH_USD, recipient, chainId, getClient: () => client })],
  secretKey,
  realm: 'bench.mppx',
})
const pay = Mppx.toNodeListener(mppx.charge({ amount }))
const ANSWER = JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion', created: 0, model: 'claude-haiku-4-5',
  choices: [{ index: 0, message: { role: 'assistant', content: 'paid' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
})

const server = nodeHttp.createServer(async (req, res) => {
  try {
    if (req.method !== 'POST') {
      res.writeHead(405).end()
      return
    }
    const result = await pay(req, res)
    if (result.status === 402) return
    res.setHeader('content-type', 'application/json')
    res.end(ANSWER)
  } catch (err) {
    console.error(err)
    if (!res.headersSent) res.writeHead(500)
    res.end()
  }
})
server.keepAliveTimeout = 60_000
server.listen(Number(portText), '127.0.0.1', () => console.log(`listening ${server.address().port}`))
process.on('SIGTERM', () => process.exit(0))
