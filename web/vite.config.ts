import { defineConfig } from 'vitest/config';

// The bundle is embedded in p2pe-node (node/src/rpc/ui.rs), which lists its files by name: keep the
// names fixed (no content hashes) and everything in one script and one stylesheet.
//
// `npm run dev` (hot reload) and `npx vite preview` (the built dist/) serve the page and forward
// JSON-RPC (POST /, WebSocket /) and /contracts.json to a running node:
// P2PE_RPC=http://127.0.0.1:8545 (the default).
const rpc = process.env.P2PE_RPC ?? 'http://127.0.0.1:8545';

function proxy() {
  return {
    '/contracts.json': { target: rpc, changeOrigin: true },
    '^/$': {
      target: rpc,
      changeOrigin: true,
      ws: true,
      // Only JSON-RPC goes to the node; GET / is the page.
      bypass: (req: { method?: string; url?: string; headers: Record<string, unknown> }) =>
        req.method === 'POST' || req.headers.upgrade ? undefined : req.url,
    },
  };
}

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 100_000,
    modulePreload: false,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/app.js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: (info) => (info.names.some((n) => n.endsWith('.css')) ? 'assets/app.css' : 'assets/[name][extname]'),
        inlineDynamicImports: true,
      },
    },
  },
  server: { proxy: proxy() },
  preview: { proxy: proxy() },
  // Unit tests only; the browser tests (tests/browser/) run under `node --test`.
  test: { include: ['tests/unit/**/*.test.ts'] },
});
