//! Gate decisions on real signed tokens and key sets (ES256 keys generated here).
