// Unit tests run in jsdom. The shared chat module (jupyter_sessions/static/chat.js, plain ESM) and
// JupyterLab's ESM packages are transpiled by ts-jest; CSS imports are stubbed.
const path = require('path');

const esm = [
  '@jupyterlab',
  '@jupyter',
  '@lumino',
  '@microsoft',
  'exenv-es6',
  'lib0',
  'nanoid',
  'y-protocols',
  'yjs',
  'vscode-ws-jsonrpc',
  '@codemirror',
  '@lezer',
  'color'
].join('|');

module.exports = {
  testEnvironment: '<rootDir>/src/__tests__/environment.js',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/**/*.spec.ts'],
  setupFiles: ['<rootDir>/src/__tests__/setup.js'],
  moduleNameMapper: {
    '^@jupyter-sessions/chat$': path.resolve(__dirname, '../jupyter_sessions/static/chat.js'),
    '\\.(css|less|svg)$': '<rootDir>/src/__tests__/stub.js'
  },
  transform: {
    '^.+\\.[tj]sx?$': [
      'ts-jest',
      {
        tsconfig: {
          allowJs: true,
          esModuleInterop: true,
          module: 'commonjs',
          target: 'ES2020',
          types: ['jest'],
          isolatedModules: true
        },
        diagnostics: false
      }
    ]
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esm})/)`],
  collectCoverageFrom: ['src/**/*.ts', '!src/__tests__/**', path.resolve(__dirname, '../jupyter_sessions/static/chat.js')],
  coverageReporters: ['text-summary', 'lcov'],
  testTimeout: 15000
};
