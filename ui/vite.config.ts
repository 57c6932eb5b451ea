// Build and dev-server configuration of Ironhorn's web UI: output for the manager to serve
// at `/`, and a dev proxy of the API (and its event stream) to a running server.
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const target = process.env.IRONHORN_URL || 'http://127.0.0.1:9600';

export default defineConfig({
  base: '/',
  plugins: [preact()],
  build: {
    outDir: process.env.IRONHORN_UI_OUT || 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: {
    proxy: {
      '/v1': {
        target,
        changeOrigin: false,
        configure(proxy) {
          // Server-sent events must reach the browser as they come: ask the upstream for no
          // compression and tell anything in between not to buffer.
          proxy.on('proxyReq', (proxyReq, req) => {
            if (req.url?.startsWith('/v1/events')) {
              proxyReq.setHeader('accept-encoding', 'identity');
            }
          });
          proxy.on('proxyRes', (proxyRes, req, res) => {
            if (req.url?.startsWith('/v1/events')) {
              res.setHeader('cache-control', 'no-cache');
              res.setHeader('x-accel-buffering', 'no');
              // When the server goes away mid-stream, end the browser's stream too, so its
              // EventSource notices (and the UI falls back to polling) instead of waiting.
              proxyRes.on('close', () => {
                if (!res.writableEnded) res.destroy();
              });
            }
          });
        },
      },
      '/healthz': { target, changeOrigin: false },
    },
  },
});
