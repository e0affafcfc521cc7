/*
 * Mints a development token (HS256, with JWT_SECRET or the development
 * secret): npm run token -- <role> [user id]
 * Roles: client, therapist, admin, payment_provider, integration. Without a user id, a
 * fixed one per role, so that repeated tokens act as the same user.
 */
import { APP_ROLES, AppRole, mintToken } from '../server/auth';
import { readConfig } from '../server/config';

const DEV_USERS: Record<AppRole, string> = {
  client: '00000000-0000-4000-8000-00000000c11e',
  therapist: '00000000-0000-4000-8000-0000000074e7',
  admin: '00000000-0000-4000-8000-00000000ad01',
  payment_provider: '00000000-0000-4000-8000-00000000fa11',
  integration: '00000000-0000-4000-8000-0000000014e9',
};

const [role, userId] = process.argv.slice(2) as [AppRole, string | undefined];
if (!APP_ROLES.includes(role)) {
  console.error(`usage: npm run token -- <${APP_ROLES.join('|')}> [user id]`);
  process.exit(2);
}
const config = readConfig();
if (config.jwt.algorithm !== 'HS256') {
  console.error('npm run token signs with JWT_SECRET; with JWT_PUBLIC_KEY, tokens come from your identity provider.');
  process.exit(2);
}
console.log(mintToken({ role, userId: userId ?? DEV_USERS[role] }, config.jwt.secret));
