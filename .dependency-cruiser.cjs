// The folder floors of ARCHITECTURE.md, held by `npm run lint`: imports point down
// (cli → server → api → intake/dns/projections → admission → engine → security/bus/store/config → domain),
// never back up, and the node-side SDKs load no server module.
/** A rule: modules under `folder` may import only the folders listed (and packages of node_modules). */
const floor = (folder, allowed, comment) => ({
  name: `floor-${folder.replace(/\W+/g, '-').replace(/-$/, '')}`,
  comment,
  severity: 'error',
  from: { path: `^src/${folder}` },
  to: { path: '^src/', pathNot: [`^src/${folder}`, ...allowed.map((target) => `^src/${target}`)] },
});

const BELOW_ENGINE = ['domain/', 'store/', 'bus/', 'security/', 'config/', 'metrics\\.ts$', 'version\\.ts$'];
const BELOW_ADMISSION = ['engine/', ...BELOW_ENGINE];
const BELOW_SURFACES = ['admission/', ...BELOW_ADMISSION];

module.exports = {
  forbidden: [
    floor('domain/', [], 'domain/ holds the wire types and the record rules as pure functions: it imports nothing of ours.'),
    floor('config/', ['domain/'], 'config/ reads and validates settings; it knows only the domain.'),
    floor('store/', ['domain/', 'config/'], 'store/ persists the domain; it knows nothing above it.'),
    floor('bus/', ['domain/', 'config/'], 'bus/ carries events; it knows nothing above it.'),
    floor('security/', ['domain/', 'store/', 'config/', 'metrics\\.ts$'], 'security/ (ca, svids, signing, keys, audit) must not import the engine or anything above it.'),
    floor(
      'engine/',
      BELOW_ENGINE.filter((target) => target !== 'engine/'),
      'engine/ is below admission, intake and every surface.',
    ),
    floor('admission/', BELOW_ADMISSION, "admission/ is the engine's hook: it may use the engine, never the doors above it."),
    floor('intake/', BELOW_SURFACES, 'intake/ turns a door’s event into a registry write; it knows no surface.'),
    floor('dns/', BELOW_SURFACES, 'dns/ is a read surface over the engine; it knows no other surface.'),
    floor('projections/', BELOW_SURFACES, 'projections/ follow the engine; they know no surface.'),
    floor('api/', ['intake/', 'dns/', 'projections/', ...BELOW_SURFACES], 'api/ routes are thin adapters over intake and the readers; nothing below imports them.'),
    floor('agent/', ['domain/', 'bus/', 'security/(signing|ca|x509)\\.ts$', 'client/', 'version\\.ts$'], 'agent/ is the node-side SDK (`rollcall/agent`): it loads no server module.'),
    floor('client/', ['domain/', 'bus/', 'security/identity-service\\.ts$', 'version\\.ts$'], 'client/ is the consumer SDK (`rollcall/client`): it loads no server module.'),
    {
      name: 'sdk-loads-no-server-package',
      comment: 'The SDK entry points must not pull in the HTTP server or a database driver.',
      severity: 'error',
      from: { path: '^src/(agent|client)/' },
      to: { path: 'node_modules/(fastify|@fastify|pg|@electric-sql)/' },
    },
    {
      name: 'nothing-imports-the-cli',
      comment: 'cli/ is the top: only bin/ starts it.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'only-the-top-imports-the-root',
      comment: 'server.ts is the composition root: only the CLI and the package index build it.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/cli/', '^src/index\\.ts$'] },
      to: { path: '^src/server\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
