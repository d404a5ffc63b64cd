// Merged into @jupyter/builder's config (package.json jupyterlab.webpackConfig): the chat view is
// the Python package's own ES module, shared with the notebook widget, bundled from its source.
const path = require('path');

module.exports = {
  resolve: {
    alias: {
      '@jupyter-sessions/chat$': path.resolve(__dirname, '../jupyter_sessions/static/chat.js')
    }
  }
};
