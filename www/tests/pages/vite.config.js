// Test pages built with Vite by scripts/test into the served directory's /tests/pages/:
// hooks.html (tidesync/react render counts), query.html (useQuery), devtools.html (tidesync/devtools) and blank.html (an
// empty page of the server's origin where the README examples run).
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: './',
  plugins: [react()],
  resolve: { preserveSymlinks: true },
  optimizeDeps: { exclude: ['tidesync'] },
  build: {
    outDir: process.env.TIDESYNC_PAGES_OUT ?? here('../../dist-test-pages'),
    emptyOutDir: true,
    target: 'es2022',
    // Readable stacks in test failures.
    minify: false,
    rollupOptions: { input: { hooks: here('hooks.html'), devtools: here('devtools.html'), query: here('query.html'), blank: here('blank.html') } },
  },
});
