// @peculiar/x509 with the Reflect metadata API it needs (its DI container, tsyringe, requires the
// polyfill to be loaded first): import X.509 from here, never from the package directly.
import 'reflect-metadata';

export * from '@peculiar/x509';
