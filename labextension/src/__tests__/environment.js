// jsdom plus the fetch API classes of Node (Request, Response, Headers), which jsdom lacks.
const { TestEnvironment } = require('jest-environment-jsdom');

class Environment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of ['Request', 'Response', 'Headers', 'fetch', 'TextEncoder', 'TextDecoder']) {
      if (this.global[name] === undefined && globalThis[name] !== undefined) {
        this.global[name] = globalThis[name];
      }
    }
  }
}

module.exports = Environment;
