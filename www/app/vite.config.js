// The demo app. `npm run build` (what scripts/demo and scripts/test do) writes a static site the
// reference server serves with --static; `npm run dev` serves it with Vite, the API proxied to a
// reference server started separately (TIDESYNC_SERVER, default http://127.0.0.1:8787).
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const server = process.env.TIDESYNC_SERVER ?? 'http://127.0.0.1:8787';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [react()],
  resolve: {
    // `tidesync` is linked from ../pkg (file:../pkg): resolve it as an installed package would
    // be, so its `react` import finds www/node_modules/react.
    preserveSymlinks: true,
  },
  // Pre-bundling would move tidesync.js away from tidesync_bg.wasm, which it loads with
  // `new URL('tidesync_bg.wasm', import.meta.url)`. Apps using tidesync with Vite need this too.
  optimizeDeps: { exclude: ['tidesync'] },
  build: {
    outDir: process.env.TIDESYNC_DEMO_OUT ?? fileURLToPath(new URL('../dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
  },
  server: { proxy: { '/api': server, '/auth': server, '/admin': server } },
});
