export { packageVersion } from '../src/version.js'
