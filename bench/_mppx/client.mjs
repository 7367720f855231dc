// mppx as a paying client: pays the 402 of a POST to a given URL, first sequentially, then from
// K concurrent clients, and prints the timings as one JSON object on stdout.
//
// usage: MPPX_BENCH_KEYS=0xkey1,0xkey2,... node client.mjs <url> <rpc-url> <chain-id> <body-json> \
//            <warmup> <sequential> <per-client>
// The first key pays the sequential requests; every key is one concurrent client.  Keys come from
// the environment so they never appear in a process listing.
import { defineChain, createClient, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { Mppx, tempo } from 'mppx/client'

const [url, rpcUrl, chainIdText, body, warmupText, sequentialText, perClientText] = process.argv.slice(2)
const chainId = Number(chainIdText)
const keys = (process.env.MPPX_BENCH_KEYS ?? '').split(',').filter(Boolean)
if (!url || !rpcUrl || !body || keys.length === 0) {
  console.error('usage: MPPX_BENCH_KEYS=... node client.mjs <url> <rpc-url> <chain-id> <body> <warmup> <n> <per-client>')
  process.exit(2)
}

const chain = defineChain({
  id: chainId,
  name: 'tempo devnet',
  nativeCurrency: { name: 'USD', symbol: 'USD', decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
})

function payer(key) {
  const client = createClient({ chain, transport: http(rpcUrl) })
  const method = tempo.charge({ account: privateKeyToAccount(key), getClient: () => client })
  return Mppx.create({ methods: [method], polyfill: false })
}

async function paid(mppx) {
  const res = await mppx.fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  const text = await res.text()
  if (res.status !== 200 || !res.headers.get('payment-receipt'))
    throw new Error(`paid request failed: ${res.status} ${text.slice(0, 300)}`)
}

const payers = keys.map(payer)
for (let i = 0; i < Number(warmupText); i++) await paid(payers[0])
const sequential = []
for (let i = 0; i < Number(sequentialText); i++) {
  const t0 = performance.now()
  await paid(payers[0])
  sequential.push(performance.now() - t0)
}
const perClient = Number(perClientText)
const t0 = performance.now()
await Promise.all(payers.map(async (p) => { for (let i = 0; i < perClient; i++) await paid(p) }))
const seconds = (performance.now() - t0) / 1000
console.log(JSON.stringify({
  sequential_ms: sequential,
  clients: payers.length,
  per_client: perClient,
  concurrent_seconds: seconds,
  requests_per_second: (payers.length * perClient) / seconds,
}))
