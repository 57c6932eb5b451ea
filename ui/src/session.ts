// Who is signed in, for every page: the Me answer (user, role, via) through a Preact context,
// and useCan() for deciding whether a control that changes something is rendered at all.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { can, type Me } from './api';

export const SessionContext = createContext<Me | null>(null);

export function useMe(): Me | null {
  return useContext(SessionContext);
}

/** Whether the signed-in user may make changes that need `need`. */
export function useCan(need: 'operator' | 'admin'): boolean {
  return can(useMe()?.role, need);
}
