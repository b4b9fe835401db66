// A test wallet that behaves like MetaMask towards the page: the page sees an EIP-1193 provider
// (announced through EIP-6963, or only as window.ethereum) whose requests are answered here, in the
// test process, with real keys from the dev mnemonic. Reads are forwarded to the current network's
// RPC URL; transactions are filled (nonce, gas, fees), signed locally and sent raw; typed data is
// signed with eth_signTypedData_v4 semantics. The test can make the user reject the next request
// (EIP-1193 error 4001), switch accounts and networks, and inspect every request the page made.
import { createPublicClient, createWalletClient, defineChain, getAddress, http, keccak256, numberToHex } from 'viem';
import { mnemonicToAccount } from 'viem/accounts';

export const DEV_MNEMONIC = 'test test test test test test test test test test test junk';
export const devAccount = (i) => mnemonicToAccount(DEV_MNEMONIC, { addressIndex: i });

const ICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%23e2761b'/%3E%3C/svg%3E";

class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

export class TestWallet {
  /** @param {{ accounts: number[], chainId?: number }} opts  mnemonic indices; the starting chain (default 1, mainnet) */
  constructor({ accounts, chainId = 1 }) {
    this.accounts = accounts.map((i) => devAccount(i));
    this.selected = 0;
    this.connected = false;
    this.chainId = chainId;
    /** chainId -> { rpcUrl, params } ; mainnet is "known" but has no reachable RPC here */
    this.chains = new Map([[1, { rpcUrl: null, params: null }]]);
    this.rejectNext = new Set();
    /** Methods this wallet does not implement (answered with EIP-1193 error 4200). */
    this.unsupported = new Set();
    this.requests = [];
    this.addedChains = [];
    this.pages = [];
    /** Misbehaviour modes: `lose` — the next eth_sendTransaction is signed and its hash returned, but
     *  it is never broadcast (a wallet or RPC that loses it); `delay[kind]` — ms the user takes before
     *  confirming the next request of that kind ('sign', 'tx'). */
    this.loseNext = false;
    this.delay = {};
    /** Hashes this wallet returned without broadcasting them. */
    this.lost = [];
  }

  async takeDelay(kind) {
    const ms = this.delay[kind];
    if (ms) {
      delete this.delay[kind];
      await new Promise((r) => setTimeout(r, ms));
    }
  }

  get account() {
    return this.accounts[this.selected];
  }

  /** Makes the next request of this kind fail with 4001 (connect, sign, tx, addChain, switchChain). */
  reject(kind) {
    this.rejectNext.add(kind);
  }

  count(method) {
    return this.requests.filter((r) => r.method === method).length;
  }

  async emit(event, arg) {
    for (const page of this.pages) {
      await page.evaluate(([e, a]) => window.__p2peWalletEmit?.(e, a), [event, arg]);
    }
  }

  async switchAccount(i) {
    this.selected = i;
    await this.emit('accountsChanged', [this.account.address]);
  }

  async switchChain(chainId) {
    this.chainId = chainId;
    await this.emit('chainChanged', numberToHex(chainId));
  }

  /** Installs the provider in `page` before any page script runs. `announce: false` exposes only
   *  window.ethereum (the EIP-1193 fallback path). */
  async install(page, { announce = true } = {}) {
    this.pages.push(page);
    await page.exposeFunction('__p2peWalletRequest', async (req) => {
      try {
        return { result: await this.handle(req.method, req.params ?? []) };
      } catch (e) {
        return { error: { code: e.code ?? -32603, message: e.message, data: e.data } };
      }
    });
    await page.addInitScript(
      ({ announce, icon }) => {
        const listeners = {};
        const provider = {
          async request({ method, params }) {
            const res = await window.__p2peWalletRequest({ method, params });
            if (res.error) {
              const err = new Error(res.error.message);
              err.code = res.error.code;
              if (res.error.data !== undefined) err.data = res.error.data;
              throw err;
            }
            return res.result;
          },
          on(event, fn) {
            (listeners[event] ||= []).push(fn);
            return provider;
          },
          removeListener(event, fn) {
            listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
            return provider;
          },
        };
        window.__p2peWalletEmit = (event, arg) => (listeners[event] || []).forEach((fn) => fn(arg));
        window.ethereum = provider;
        if (announce) {
          const info = Object.freeze({ uuid: crypto.randomUUID(), name: 'Test Wallet', icon, rdns: 'org.p2pe.testwallet' });
          const detail = Object.freeze({ info, provider });
          const announceIt = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail }));
          window.addEventListener('eip6963:requestProvider', announceIt);
          announceIt();
        }
      },
      { announce, icon: ICON },
    );
  }

  rpcUrl() {
    const c = this.chains.get(this.chainId);
    if (!c?.rpcUrl) throw new RpcError(4901, `The test wallet has no RPC for chain ${this.chainId}`);
    return c.rpcUrl;
  }

  async forward(method, params) {
    const res = await fetch(this.rpcUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    const j = await res.json();
    if (j.error) throw new RpcError(j.error.code, j.error.message, j.error.data);
    return j.result;
  }

  takeRejection(kind) {
    if (this.rejectNext.has(kind)) {
      this.rejectNext.delete(kind);
      throw new RpcError(4001, 'User rejected the request.');
    }
  }

  async handle(method, params) {
    this.requests.push({ method, params });
    if (this.unsupported.has(method)) throw new RpcError(4200, `The test wallet does not support ${method}`);
    switch (method) {
      case 'eth_requestAccounts':
        this.takeRejection('connect');
        this.connected = true;
        return [this.account.address];
      case 'eth_accounts':
        return this.connected ? [this.account.address] : [];
      case 'eth_chainId':
        return numberToHex(this.chainId);
      case 'net_version':
        return String(this.chainId);
      case 'wallet_addEthereumChain': {
        const p = params[0];
        this.takeRejection('addChain');
        const id = Number(BigInt(p.chainId));
        // Like MetaMask: the RPC URL must answer with the same chain id.
        const res = await fetch(p.rpcUrls[0], {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
        }).then((r) => r.json());
        if (Number(BigInt(res.result)) !== id) {
          throw new RpcError(-32602, `Chain ID returned by the RPC URL (${res.result}) does not match ${p.chainId}`);
        }
        this.addedChains.push(p);
        this.chains.set(id, { rpcUrl: p.rpcUrls[0], params: p });
        // MetaMask asks to switch right after adding; the user accepts.
        if (this.chainId !== id) await this.switchChain(id);
        return null;
      }
      case 'wallet_switchEthereumChain': {
        const id = Number(BigInt(params[0].chainId));
        if (!this.chains.has(id)) throw new RpcError(4902, `Unrecognized chain ID "${params[0].chainId}". Try adding the chain using wallet_addEthereumChain first.`);
        this.takeRejection('switchChain');
        if (this.chainId !== id) await this.switchChain(id);
        return null;
      }
      case 'eth_sendTransaction': {
        if (!this.connected) throw new RpcError(4100, 'Unauthorized');
        const tx = params[0];
        if (getAddress(tx.from) !== this.account.address) throw new RpcError(4100, 'from is not the selected account');
        this.takeRejection('tx');
        await this.takeDelay('tx');
        const chain = defineChain({
          id: this.chainId,
          name: `chain ${this.chainId}`,
          nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
          rpcUrls: { default: { http: [this.rpcUrl()] } },
        });
        const client = createWalletClient({ account: this.account, chain, transport: http(this.rpcUrl()) });
        // Like MetaMask, use the fees the site suggests when it suggests any; else estimate.
        const fees =
          tx.maxFeePerGas !== undefined
            ? { maxFeePerGas: BigInt(tx.maxFeePerGas), maxPriorityFeePerGas: BigInt(tx.maxPriorityFeePerGas ?? 0) }
            : tx.gasPrice !== undefined
              ? { gasPrice: BigInt(tx.gasPrice) }
              : {};
        if (this.loseNext) {
          this.loseNext = false;
          const req = await client.prepareTransactionRequest({
            to: tx.to,
            data: tx.data ?? tx.input,
            gas: tx.gas ? BigInt(tx.gas) : undefined,
            ...fees,
          });
          const hash = keccak256(await this.account.signTransaction(req));
          this.lost.push(hash);
          return hash;
        }
        return client.sendTransaction({
          to: tx.to,
          data: tx.data ?? tx.input,
          value: tx.value ? BigInt(tx.value) : undefined,
          gas: tx.gas ? BigInt(tx.gas) : undefined,
          ...fees,
        });
      }
      case 'eth_signTypedData_v4': {
        if (!this.connected) throw new RpcError(4100, 'Unauthorized');
        const [address, json] = params;
        if (getAddress(address) !== this.account.address) throw new RpcError(4100, 'not the selected account');
        this.takeRejection('sign');
        await this.takeDelay('sign');
        const data = typeof json === 'string' ? JSON.parse(json) : json;
        const { EIP712Domain: _, ...types } = data.types;
        return this.account.signTypedData({ domain: data.domain, types, primaryType: data.primaryType, message: data.message });
      }
      case 'personal_sign': {
        this.takeRejection('sign');
        return this.account.signMessage({ message: { raw: params[0] } });
      }
      default:
        return this.forward(method, params);
    }
  }
}

/** A viem client that sends from a dev-mnemonic key straight to the node (for the test's own
 *  transactions: meter readings, settling the other side). */
export function keyClient(url, chainId, index) {
  const chain = defineChain({
    id: chainId,
    name: 'p2pe',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [url] } },
  });
  return {
    wallet: createWalletClient({ account: devAccount(index), chain, transport: http(url) }),
    public: createPublicClient({ chain, transport: http(url), pollingInterval: 300 }),
  };
}
