// The page's own connection to the node: reads and subscriptions go straight to the node that
// served the page (WebSocket on the page's origin), never through the wallet. The wallet is used
// for the account, signatures and transactions only.

import {
  type Address,
  type Chain,
  type PublicClient,
  createPublicClient,
  defineChain,
  getAddress,
  webSocket,
} from 'viem';
import { creditTokenAbi, energyMarketAbi, registryAbi } from './generated/abis';

/** The fixed genesis addresses (README, "The energy market at genesis"); used when the node does not
 *  serve /contracts.json (for example a page served by another web server). */
export const GENESIS_ADDRESSES = {
  registry: '0xf18b54d319F1948FEb3640ACe376fbf728fc03ED',
  token: '0xA5f39C177876700BEA54E56890Ef91ce338464D8',
  readings: '0x120F3E8a2ecE628B57D2f2b977ADACdD2E4B2206',
  market: '0x24B5F01F29f1fF36C33a5E03e7D1DE924262E9fa',
} as const satisfies Record<string, Address>;

export interface MarketConfig {
  chainId: number;
  chainName: string;
  rpcUrl: string;
  wsUrl: string;
  registry: Address;
  token: Address;
  readings: Address;
  market: Address;
  grid: Address;
  startTime: bigint;
  slotLength: bigint;
  gateClosure: bigint;
  gracePeriod: bigint;
  payAsBid: boolean;
  priceTick: bigint;
  tokenSymbol: string;
  /** Where the addresses came from: the node's /contracts.json or the built-in genesis table. */
  source: 'contracts.json' | 'built-in';
}

export interface Connection {
  client: PublicClient;
  chain: Chain;
  config: MarketConfig;
}

/** The RPC URL of the node: the page's own origin (JSON-RPC is POST / and WebSocket / there). */
export function rpcUrlOfPage(): string {
  return window.location.origin;
}

async function loadAddresses(): Promise<{ a: typeof GENESIS_ADDRESSES & { grid?: Address }; source: MarketConfig['source'] }> {
  try {
    const res = await fetch('/contracts.json', { cache: 'no-store' });
    if (res.ok) {
      const j = (await res.json()) as Record<string, string>;
      return {
        a: {
          registry: getAddress(j.registry),
          token: getAddress(j.token),
          readings: getAddress(j.readings),
          market: getAddress(j.market),
          grid: j.grid ? getAddress(j.grid) : undefined,
        } as typeof GENESIS_ADDRESSES & { grid?: Address },
        source: 'contracts.json',
      };
    }
  } catch {
    // fall through to the built-in table
  }
  return { a: { ...GENESIS_ADDRESSES }, source: 'built-in' };
}

/** Connects to the node, finds the contracts and reads the market's schedule from them. */
export async function connectNode(): Promise<Connection> {
  const rpcUrl = rpcUrlOfPage();
  const wsUrl = rpcUrl.replace(/^http/, 'ws') + '/';
  const transport = webSocket(wsUrl, { reconnect: false, keepAlive: { interval: 15_000 } });
  const probe = createPublicClient({ transport });
  const chainId = await probe.getChainId();
  const chainName = `P2P Energy (chain ${chainId})`;
  const chain = defineChain({
    id: chainId,
    name: chainName,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl], webSocket: [wsUrl] } },
  });
  const client = createPublicClient({ chain, transport }) as PublicClient;
  const { a, source } = await loadAddresses();
  const code = await client.getCode({ address: a.market });
  if (!code || code === '0x') {
    throw new Error(
      `No energy market contract at ${a.market} on chain ${chainId}. Is this node running a p2p-energy chain?`,
    );
  }
  const m = { address: a.market, abi: energyMarketAbi } as const;
  const [startTime, slotLength, gateClosure, gracePeriod, mode, grid, priceTick, tokenSymbol] = await Promise.all([
    client.readContract({ ...m, functionName: 'startTime' }),
    client.readContract({ ...m, functionName: 'slotLength' }),
    client.readContract({ ...m, functionName: 'gateClosure' }),
    client.readContract({ ...m, functionName: 'gracePeriod' }),
    client.readContract({ ...m, functionName: 'mode' }),
    client.readContract({ ...m, functionName: 'gridAccount' }),
    client.readContract({ address: a.registry, abi: registryAbi, functionName: 'priceTick' }),
    client.readContract({ address: a.token, abi: creditTokenAbi, functionName: 'symbol' }),
  ]);
  return {
    client,
    chain,
    config: {
      chainId,
      chainName,
      rpcUrl,
      wsUrl,
      registry: a.registry,
      token: a.token,
      readings: a.readings,
      market: a.market,
      grid: getAddress(grid),
      startTime: BigInt(startTime),
      slotLength: BigInt(slotLength),
      gateClosure: BigInt(gateClosure),
      gracePeriod: BigInt(gracePeriod),
      payAsBid: Number(mode) === 1,
      priceTick,
      tokenSymbol,
      source,
    },
  };
}
