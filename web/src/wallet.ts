// Wallet discovery and connection: EIP-6963 (every wallet announces itself) with the EIP-1193
// `window.ethereum` fallback for wallets that do not announce. The page talks to the wallet only
// through `provider.request` and the `accountsChanged` / `chainChanged` events, as MetaMask expects.

import { type Address, getAddress, numberToHex } from 'viem';

export interface Eip1193Provider {
  request(args: { method: string; params?: unknown }): Promise<unknown>;
  on?(event: string, listener: (...args: unknown[]) => void): void;
  removeListener?(event: string, listener: (...args: unknown[]) => void): void;
}

export interface ProviderInfo {
  uuid: string;
  name: string;
  icon: string;
  rdns: string;
}

export interface ProviderDetail {
  info: ProviderInfo;
  provider: Eip1193Provider;
}

/** Collects EIP-6963 announcements; falls back to `window.ethereum` when nothing announces within
 *  `fallbackAfterMs`. Calls `onChange` with the current list whenever it grows. */
export function discoverWallets(onChange: (wallets: ProviderDetail[]) => void, fallbackAfterMs = 400): () => void {
  const wallets: ProviderDetail[] = [];
  const onAnnounce = (event: Event) => {
    const detail = (event as CustomEvent<ProviderDetail>).detail;
    if (!detail?.info?.uuid || !detail.provider) return;
    if (wallets.some((w) => w.info.uuid === detail.info.uuid)) return;
    // A real announcement replaces the fallback for the same provider object.
    const fallback = wallets.findIndex((w) => w.info.rdns === 'window.ethereum' && w.provider === detail.provider);
    if (fallback >= 0) wallets.splice(fallback, 1);
    wallets.push({ info: detail.info, provider: detail.provider });
    onChange([...wallets]);
  };
  window.addEventListener('eip6963:announceProvider', onAnnounce);
  window.dispatchEvent(new Event('eip6963:requestProvider'));
  const timer = window.setTimeout(() => {
    const injected = (window as unknown as { ethereum?: Eip1193Provider }).ethereum;
    if (injected && !wallets.some((w) => w.provider === injected)) {
      wallets.push({
        info: { uuid: 'window.ethereum', name: 'Browser wallet', icon: '', rdns: 'window.ethereum' },
        provider: injected,
      });
      onChange([...wallets]);
    } else if (wallets.length === 0) {
      onChange([]);
    }
  }, fallbackAfterMs);
  return () => {
    window.removeEventListener('eip6963:announceProvider', onAnnounce);
    window.clearTimeout(timer);
  };
}

export interface NetworkParams {
  chainId: number;
  chainName: string;
  rpcUrl: string;
}

/** The `wallet_addEthereumChain` parameters of this chain (EIP-3085). */
export function addChainParams(p: NetworkParams) {
  return {
    chainId: numberToHex(p.chainId),
    chainName: p.chainName,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: [p.rpcUrl],
  };
}

export async function requestAccounts(provider: Eip1193Provider): Promise<Address[]> {
  const accounts = (await provider.request({ method: 'eth_requestAccounts' })) as string[];
  return accounts.map((a) => getAddress(a));
}

export async function currentAccounts(provider: Eip1193Provider): Promise<Address[]> {
  const accounts = (await provider.request({ method: 'eth_accounts' })) as string[];
  return accounts.map((a) => getAddress(a));
}

export async function walletChainId(provider: Eip1193Provider): Promise<number> {
  return Number(BigInt((await provider.request({ method: 'eth_chainId' })) as string));
}

export async function addNetwork(provider: Eip1193Provider, p: NetworkParams): Promise<void> {
  await provider.request({ method: 'wallet_addEthereumChain', params: [addChainParams(p)] });
}

/** Switches the wallet to the chain; adds it first if the wallet does not know it (error 4902). */
export async function switchNetwork(provider: Eip1193Provider, p: NetworkParams): Promise<void> {
  try {
    await provider.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: numberToHex(p.chainId) }] });
  } catch (err) {
    const code = (err as { code?: number })?.code ?? (err as { data?: { originalError?: { code?: number } } })?.data?.originalError?.code;
    if (code !== 4902) throw err;
    await addNetwork(provider, p);
    // MetaMask switches to a chain right after adding it; other wallets may need the switch again.
    if ((await walletChainId(provider)) !== p.chainId) {
      await provider.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: numberToHex(p.chainId) }] });
    }
  }
}
